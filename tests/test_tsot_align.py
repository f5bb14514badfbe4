"""CTC forced alignment: the Viterbi path against brute force, and token times on synthesized speech."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from training.signal_ops import trim_silence
from training.synth import synthesize_sentence
from training.tsot.align import align, ctc_viterbi

BLANK = 0


def _collapse(path: tuple[int, ...]) -> list[int]:
    """CTC's many-to-one map: merge repeats, drop blanks."""
    return [label for index, label in enumerate(path) if label != BLANK and (index == 0 or path[index - 1] != label)]


def _brute_force(log_probs: np.ndarray, tokens: list[int]) -> float:
    """Best path score over every frame labelling that collapses to ``tokens``."""
    num_frames, vocab = log_probs.shape
    best = -np.inf
    for path in itertools.product(range(vocab), repeat=num_frames):
        if _collapse(path) == tokens:
            best = max(best, float(sum(log_probs[t, label] for t, label in enumerate(path))))
    return best


def _path_score(log_probs: np.ndarray, tokens: list[int], spans: list[tuple[int, int]]) -> float:
    labels = np.full(log_probs.shape[0], BLANK)
    for token, (first, last) in zip(tokens, spans, strict=True):
        labels[first : last + 1] = token
    return float(log_probs[np.arange(len(labels)), labels].sum())


@pytest.mark.parametrize("tokens", [[1], [1, 2], [2, 2], [1, 2, 1], [2, 2, 1]])
def test_viterbi_is_the_best_path(tokens: list[int]) -> None:
    rng = np.random.default_rng(len(tokens) * 7 + tokens[0])
    for _ in range(5):
        logits = rng.standard_normal((6, 3))
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        spans = ctc_viterbi(log_probs, tokens, BLANK)
        assert len(spans) == len(tokens)
        assert all(first <= last for first, last in spans)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert _path_score(log_probs, tokens, spans) == pytest.approx(_brute_force(log_probs, tokens))


def test_viterbi_refuses_too_few_frames() -> None:
    with pytest.raises(ValueError, match="no CTC alignment"):
        ctc_viterbi(np.zeros((2, 3)), [1, 1], BLANK)  # a repeat needs a blank between: 3 frames


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_alignment_of_synthesized_speech_lies_within_the_speech() -> None:
    model = load_model(DEFAULT_MODEL_DIR)
    rate, lead_s, trail_s = 16000, 1.0, 1.0
    speech, _ = synthesize_sentence("please call me back tomorrow morning", sample_rate=rate)
    speech = trim_silence(speech, rate)
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(int(lead_s * rate)), speech, np.zeros(int(trail_s * rate))])
    audio = (audio + 1e-4 * rng.standard_normal(audio.size)).astype(np.float32)  # a noise floor, as in the data
    alignment = align(model, audio, rate, "please call me back tomorrow morning")
    assert len(alignment.tokens) == len(alignment.start_s) == len(alignment.end_s) > 5
    assert model.tokenizer.decode(alignment.tokens) == "please call me back tomorrow morning"
    # Monotone and covering: each token has its own frames, in order.
    assert all(s < e for s, e in zip(alignment.start_s, alignment.end_s, strict=True))
    assert all(e <= s for e, s in zip(alignment.end_s, alignment.start_s[1:], strict=False))
    # Within the speech (one 40 ms frame and the fbank window of slack), not in the silences.
    speech_end = lead_s + speech.size / rate
    slack = 0.12
    assert alignment.start_s[0] >= lead_s - slack
    assert alignment.end_s[-1] <= speech_end + slack
    # The tokens spread over the speech rather than bunching at one end.
    assert alignment.start_s[len(alignment.tokens) // 2] > lead_s + 0.2 * (speech_end - lead_s)
