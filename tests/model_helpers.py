"""Helpers for model-level tests on the random-init checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from server.engine.decoder import StreamOptions
from server.engine.endpoint import EndpointConfig
from server.engine.offline import decode_streams
from server.model.checkpoint import load_model
from server.model.encoder import ConformerEncoder
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.hypotheses import Hypothesis
from server.search.ngram_lm import TokenNgramLM, build_ngram_lm
from server.search.options import Search
from server.search.utterances import final_hypotheses, search_utterances

# One utterance per stream: no endpoint fires, so a stream's final is the whole-utterance result.
_NEVER = 10**9
NO_ENDPOINTS = StreamOptions(interim_results=False, endpoint=EndpointConfig(_NEVER, _NEVER, _NEVER))


def noisy_model(random_model_dir: Path) -> StreamingTransducer:
    """The random model with blank made unlikely, so that it emits tokens, several per frame."""
    model = load_model(random_model_dir)
    with torch.no_grad():
        model.joiner.output.bias[model.tokenizer.blank_id] = -3.0
    return model


def streamed_tokens(
    model: StreamingTransducer,
    search: Search,
    utterances: Sequence[np.ndarray],
    join_at: Sequence[int] | None = None,
    piece_frames: int = 17,
) -> list[Hypothesis]:
    """Each fbank matrix (T_i, 80) streamed through the engine's decoders and batch stepper, batched
    round-robin (stream i joins at round ``join_at[i]``): the final result's tokens."""
    pieces = [[u[start : start + piece_frames] for start in range(0, len(u), piece_frames)] for u in utterances]
    results = decode_streams(model, search, pieces, NO_ENDPOINTS, join_at=join_at, features=True)
    return [
        [pair for update in updates for r in update.results if r.is_final for pair in r.tokens] for updates in results
    ]


def stream_encoder(encoder: ConformerEncoder, features: np.ndarray, piece_sizes: Sequence[int]) -> torch.Tensor:
    """Feed fbank frames (T, 80) to ``encoder.step`` in pieces of the given sizes, step every ready
    window, flush at the end: the encoder frames (T', D) of the whole stream."""
    windows = FeatureWindows(encoder.feature_window, encoder.feature_shift)
    caches = encoder.init_caches(1)
    outputs = []

    def run(window: np.ndarray, real: int) -> None:
        out, valid, keys, values, conv = encoder.step(
            torch.from_numpy(window)[None],
            torch.tensor([real]),
            caches["attn_keys"],
            caches["attn_values"],
            caches["conv_cache"],
            caches["chunks_done"],
        )
        outputs.append(out[:, : int(valid[0])])
        caches.update(attn_keys=keys, attn_values=values, conv_cache=conv, chunks_done=caches["chunks_done"] + 1)

    start = 0
    for size in piece_sizes:
        windows.push(features[start : start + size])
        start += size
        while windows.ready():
            run(windows.pop_window(), encoder.feature_window)
    for window, real in windows.final_windows():
        run(window, real)
    return torch.cat(outputs, dim=1)[0]


def whole_tokens(model: StreamingTransducer, search: Search, features: np.ndarray) -> Hypothesis:
    """The whole-utterance decoding of one fbank matrix (T, 80) with the streaming mask."""
    results = search_utterances(model, search, torch.from_numpy(features)[None], torch.tensor([features.shape[0]]))
    return final_hypotheses(model, search, results)[0]


def check_streamed_equals_whole(model: StreamingTransducer, search: Search) -> list[Hypothesis]:
    """Random utterances of 9, 64 and 157 frames, each streamed alone: the final tokens equal the
    whole-utterance decoding and are not empty. Returns them, for further checks."""
    rng = np.random.default_rng(0)
    results = []
    for num_frames in (9, 64, 157):
        features = rng.standard_normal((num_frames, 80)).astype(np.float32)
        (streamed,) = streamed_tokens(model, search, [features])
        assert streamed == whole_tokens(model, search, features)
        assert len(streamed) > 0
        results.append(streamed)
    return results


def check_batched_equals_alone(model: StreamingTransducer, search: Search) -> None:
    """Streams of 157, 60, 111 and 23 frames batched round-robin, joining at rounds 0, 2, 3 and 5:
    each stream's tokens equal those it gets alone, and none is empty."""
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    expected = [streamed_tokens(model, search, [u])[0] for u in utterances]
    assert streamed_tokens(model, search, utterances, join_at=[0, 2, 3, 5]) == expected
    assert all(expected)


def random_token_lm(model: StreamingTransducer, lowest_token: int = 1) -> TokenNgramLM:
    """A 3-gram LM over random sentences of the model's tokens from ``lowest_token`` up (seeded)."""
    rng = np.random.default_rng(3)
    vocab = model.tokenizer.vocab_size
    sentences = [rng.integers(lowest_token, vocab, size=rng.integers(3, 12)).tolist() for _ in range(300)]
    return build_ngram_lm(sentences, vocab, order=3)
