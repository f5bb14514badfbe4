"""The bundled default model recognises speech it never heard: held-out voices, CI sentences.

Audio is synthesized here with espeak-ng, streamed through the real serving path
(FbankStream -> FeatureWindows -> model.step) in uneven pieces, and scored with jiwer.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.frontend import FbankStream
from server.model.windowing import FeatureWindows
from server.search.beam import SearchConfig, beam_updates, relink
from server.search.rescoring import final_hypothesis
from training.synth import synthesize_sentence, voice_pool
from training.text_normalize import normalize_text

CI_SENTENCES = Path(__file__).resolve().parents[1] / "training" / "data" / "ci_sentences.txt"
# Stated bounds for this test (clean held-out voices, everyday sentences). The step-21800
# model of session 7 measures 6.1% with its default search (beam 32 + token 4-gram LM + word-LM
# and CTC rescoring of the final choice) and 12.6% greedy (7.65% / 20.6% on the noisier
# 200-sentence held-out set of its MODEL_CARD.md). The bounds guard against regressions of the
# serving path, search and weights (a broken path gives ~100%); lower them as the model improves.
MAX_STREAMING_WER = {"default search": 0.10, "greedy": 0.18}

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _sentences() -> list[str]:
    lines = [line.strip() for line in CI_SENTENCES.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _stream(model, samples: np.ndarray, rng: random.Random, search: SearchConfig) -> str:
    fbank = FbankStream(model.config.features)
    windows = FeatureWindows(model.feature_window, model.feature_shift)
    state = model.init_state(1, search=search)
    tokens: list[int] = []  # greedy search
    hypotheses: list[list[tuple[int, int]]] = [[] for _ in range(search.beam)]  # beam search
    scores: list[float] = [0.0] * search.beam
    ctc_chunks: list[torch.Tensor] = []  # the CTC head's frames, when the rescorer uses them

    def run(window: np.ndarray, real: int) -> None:
        nonlocal state, hypotheses, scores
        out = model.step(torch.from_numpy(window)[None], torch.tensor([real]), state, search)
        if out.ctc_log_probs is not None:
            ctc_chunks.append(out.ctc_log_probs[0, : int(out.num_frames[0])])
        if out.trace is not None:
            (update,) = beam_updates(out.trace, out.state.beam_scores)
            hypotheses, scores = relink(hypotheses, update), update.scores
        else:
            tokens.extend(token for token, _ in out.tokens[0])
        state = out.state

    start = 0
    while start < len(samples):
        size = rng.randint(160, 8000)
        windows.push(fbank.accept(samples[start : start + size]))
        start += size
        while windows.ready():
            run(windows.pop_window(), model.feature_window)
    for window, real in windows.final_windows():
        run(window, real)
    if search.beam > 1:
        # The final choice the server makes: the rescorer's (word LM, CTC head) when the model has one.
        ctc = torch.cat(ctc_chunks) if ctc_chunks else None
        chosen = final_hypothesis(
            hypotheses, scores, search.rescorer, model.tokenizer.decode, ctc, model.tokenizer.blank_id
        )
        tokens = [token for token, _ in hypotheses[chosen]]
    return model.tokenizer.decode(tokens)


@pytest.mark.parametrize("mode", ["default search", "greedy"])
def test_bundled_model_transcribes_unseen_voices_and_sentences(mode: str) -> None:
    """The model's own search (beam search, token LM, rescored final choice) and plain greedy search, chunk by chunk."""
    torch.set_num_threads(2)
    model = load_model(DEFAULT_MODEL_DIR)
    search = SearchConfig() if mode == "greedy" else model.default_search
    rng = random.Random(1234)
    voices = sorted(voice_pool("heldout"))
    references, hypotheses = [], []
    for sentence in _sentences():
        voice = rng.choice(voices)
        samples, _ = synthesize_sentence(
            sentence,
            voice=voice,
            rate=rng.randint(140, 200),
            pitch=rng.randint(30, 70),
            sample_rate=model.config.sample_rate,
        )
        references.append(normalize_text(sentence))
        hypotheses.append(normalize_text(_stream(model, samples, rng, search)) or "<empty>")
    wer = jiwer.wer(references, hypotheses)
    print(f"bundled model, {mode}: streaming WER on {len(references)} CI sentences: {wer:.2%}")
    assert wer <= MAX_STREAMING_WER[mode], list(zip(references, hypotheses, strict=True))
