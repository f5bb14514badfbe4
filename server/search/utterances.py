"""Whole utterances at once (training validation, offline evaluation, tuning): one encoder pass, one search.

With ``streaming`` the encoder uses the serving mask over the whole utterance, which computes
what chunk-by-chunk decoding computes (tests/test_transducer_streaming.py); without it, full
context (offline). The final choice among the K hypotheses is ``rescoring.final_hypothesis``,
the same call a server stream makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph
from server.search.hypotheses import BeamUpdate, Hypothesis, beam_updates, init_beam_state
from server.search.options import Search
from server.search.rescoring import final_hypothesis
from server.search.step import allowed_tokens, search_frames


@dataclass
class UtteranceHypotheses:
    """A whole utterance's search result: the K final hypotheses (``update.added``, from empty)
    with their search scores, and the CTC head's log-probabilities (T, V) of its encoder frames
    when the search rescores with them."""

    update: BeamUpdate
    ctc_log_probs: Tensor | None = None


@torch.inference_mode()
def search_utterances(
    model: StreamingTransducer,
    search: Search,
    features: Tensor,
    feature_lengths: Tensor,
    streaming: bool = True,
    with_ctc: bool | None = None,
    language_weights: Tensor | None = None,
    contexts: Sequence[ContextGraph | None] | None = None,
) -> list[UtteranceHypotheses]:
    """All K hypotheses of each utterance, before any rescoring: features (B, T, F), feature_lengths (B,).

    ``with_ctc`` (default: when the search rescores with it) also returns the CTC head's frames.
    ``language_weights`` (B, K): each utterance's language mask (None: all languages).
    ``contexts`` (B,): each utterance's phrase-boosting graph or None.
    """
    encoder_out, lengths = model.encode_utterances(features, feature_lengths, streaming, language_weights)
    batch, device = features.shape[0], features.device
    beams = init_beam_state(
        batch, search.beam, model.config.decoder.context_size, search.lm_context_size, model.tokenizer.blank_id, device
    )
    start = torch.zeros(batch, dtype=torch.int64, device=device)
    # One talker: a t-SOT model's <cc> is masked (multi-talker results come from streaming only).
    allowed = allowed_tokens(model, language_weights, torch.zeros(batch, dtype=torch.bool, device=device))
    beams, trace = search_frames(model, search, encoder_out, lengths, beams, start, allowed, contexts)
    updates = beam_updates(trace, beams.scores)
    if not (search.uses_ctc if with_ctc is None else with_ctc):
        return [UtteranceHypotheses(update) for update in updates]
    log_probs = model.ctc_log_probs(encoder_out).cpu()
    return [
        UtteranceHypotheses(update, log_probs[row, : int(length)])
        for row, (update, length) in enumerate(zip(updates, lengths.tolist(), strict=True))
    ]


def final_hypotheses(
    model: StreamingTransducer,
    search: Search,
    results: list[UtteranceHypotheses],
    contexts: Sequence[ContextGraph | None] | None = None,
) -> list[Hypothesis]:
    """Each utterance's final hypothesis ((token, frame) pairs) among its K, chosen as a server stream
    chooses it (``rescoring.final_hypothesis``); ``contexts`` as given to ``search_utterances``."""
    chosen = []
    for row, result in enumerate(results):
        update = result.update
        index = final_hypothesis(
            update.added,
            update.scores,
            search.final_rescorer,
            model.tokenizer.decode,
            result.ctc_log_probs,
            model.tokenizer.blank_id,
            None if contexts is None else contexts[row],
        )
        chosen.append(update.added[index])
    return chosen
