"""Greedy word error rate of a model on cached features: ``asr-train fit``'s validation."""

from __future__ import annotations

import random

import jiwer
import torch

from server.model.transducer import StreamingTransducer
from server.search.options import Search
from server.search.utterances import final_hypotheses, search_utterances
from training.batching import bucketed_batches, collate
from training.features import FeatureCache
from training.multilingual_model import true_language_weights
from training.text_normalize import normalize_text


def word_error_rate(
    model: StreamingTransducer,
    cache: FeatureCache,
    indices: list[int],
    streaming: bool = True,
    batch_frames: int = 30000,
) -> float:
    """Greedy WER on cached features (streaming mask or full context).

    Greedy whatever the model's configured decoding: validation compares checkpoints of one
    run, and greedy search needs no LM files and is the cheapest.
    """
    was_training = model.training
    model.eval()
    references, hypotheses = [], []
    device = model.encoder.get_buffer("feature_mean").device
    with torch.inference_mode():
        for chunk in bucketed_batches([cache.length(i) for i in indices], batch_frames, random.Random(0)):
            batch = collate(cache, [indices[i] for i in chunk], model.tokenizer)
            features, lengths = batch.features.to(device), batch.feature_lengths.to(device)
            # A CMM model is validated with each utterance's own language selected.
            weights = None
            if model.token_languages is not None:
                weights = true_language_weights(batch.languages, model.config.languages).to(device)
            results = search_utterances(model, Search(), features, lengths, streaming, language_weights=weights)
            tokens = final_hypotheses(model, Search(), results)
            hypotheses += [normalize_text(model.tokenizer.decode([t for t, _ in hyp])) for hyp in tokens]
            references += [normalize_text(text) for text in batch.texts]
    model.train(was_training)
    return jiwer.wer(references, [h or "<empty>" for h in hypotheses])
