"""CTC-head rescoring of final hypotheses: the sequence score, the choice, streaming equals
whole-utterance, the config check and the bundled checkpoint's head."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import NO_ENDPOINTS
from pydantic import ValidationError
from random_model import save_random_model
from safetensors.torch import save_file

from server.engine.batch import BatchOutput
from server.engine.offline import decode_streams
from server.model.checkpoint import load_model
from server.model.config import ModelConfig
from server.model.frontend import compute_fbank
from server.search.ctc_scores import ctc_loss_scores, ctc_sequence_log_probs, prefix_tree_scores
from server.search.options import RescoringOptions, Search, SearchOptions, SearchResources
from server.search.rescoring import Rescorer, build_word_lm
from server.search.utterances import search_utterances
from training.bundle import bundle, with_ctc_head

BLANK = 0


def _brute_force(log_probs: torch.Tensor, tokens: list[int]) -> float:
    """log Σ over every frame labelling that collapses (merge repeats, drop blanks) to ``tokens``."""
    frames, vocab = log_probs.shape
    total = -math.inf
    for path in itertools.product(range(vocab), repeat=frames):
        collapsed = [s for i, s in enumerate(path) if s != BLANK and (i == 0 or path[i - 1] != s)]
        if collapsed == tokens:
            total = float(np.logaddexp(total, sum(log_probs[t, s].item() for t, s in enumerate(path))))
    return total


SCORERS = [ctc_sequence_log_probs, ctc_loss_scores, prefix_tree_scores]


@pytest.mark.parametrize("scorer", SCORERS)
def test_sequence_score_sums_all_alignments(scorer) -> None:
    torch.manual_seed(0)
    log_probs = torch.randn(5, 4).log_softmax(dim=-1)
    hypotheses = [[1, 2], [1, 1], [3], [], [2, 3, 1], [1, 2, 1]]
    scores = scorer(log_probs, hypotheses, BLANK)
    for hypothesis, score in zip(hypotheses, scores.tolist(), strict=True):
        assert score == pytest.approx(_brute_force(log_probs, hypothesis), abs=1e-4)


@pytest.mark.parametrize("scorer", SCORERS)
def test_a_sequence_that_cannot_fit_the_frames_scores_minus_infinity(scorer) -> None:
    log_probs = torch.randn(3, 4).log_softmax(dim=-1)
    # [1, 1, 1] needs blanks between the repeats: 5 frames; [1, 2, 3, 1] needs 4.
    scores = scorer(log_probs, [[1, 1, 1], [1, 2, 3, 1], [2]], BLANK)
    assert scores[0] == -math.inf and scores[1] == -math.inf and math.isfinite(scores[2].item())


@pytest.mark.parametrize("seed", [1, 2])
def test_the_prefix_tree_equals_ctc_loss_on_a_long_n_best_list(seed: int) -> None:
    """A 20-s utterance's 32-best list: shared prefixes, diverging endings, repeats, one too long."""
    generator = torch.Generator().manual_seed(seed)
    frames, vocab = 500, 64
    log_probs = (3 * torch.randn(frames, vocab, generator=generator)).log_softmax(dim=-1)
    shared = torch.randint(1, vocab, (120,), generator=generator).tolist()
    ending = torch.randint(1, vocab, (32, 4), generator=generator).tolist()
    hypotheses = [shared[: 120 - k % 9] + ending[k][: k % 5] for k in range(32)]
    hypotheses += [[], [5, 5, 5], [7] * 300]
    assert frames * sum(map(len, hypotheses)) >= 60_000  # the size ctc_sequence_log_probs uses the tree for
    tree, reference = prefix_tree_scores(log_probs, hypotheses, BLANK), ctc_loss_scores(log_probs, hypotheses, BLANK)
    assert torch.equal(torch.isfinite(tree), torch.isfinite(reference)) and not bool(torch.isfinite(tree[-1]))
    finite = torch.isfinite(reference)
    torch.testing.assert_close(tree[finite], reference[finite], rtol=1e-5, atol=1e-3)


def test_ctc_weight_decides_between_hypotheses_the_word_lm_ties() -> None:
    lm = build_word_lm(["a b", "a c"] * 3, order=2, min_count=1)
    sentences = lm.sentence_scores(["a b", "a c"])
    assert sentences.log_probs[0].item() == pytest.approx(sentences.log_probs[1].item())
    ctc = torch.tensor([-9.0, -2.0])
    search = [-1.0, -1.5]  # the search prefers the first
    assert Rescorer(lm, weight=1.0).best(search, sentences, ctc) == 0  # no CTC weight: CTC scores ignored
    assert Rescorer(lm, weight=1.0, ctc_weight=0.5).best(search, sentences, ctc) == 1
    # Unusable CTC scores (no frames fit any hypothesis) leave the word LM's choice, without NaNs.
    impossible = torch.full((2,), -math.inf)
    scores = Rescorer(lm, weight=1.0, ctc_weight=0.5).scores(search, sentences, impossible)
    assert not torch.isnan(scores).any() and int(scores.argmax()) == 0


def test_ctc_weight_needs_a_ctc_head(random_model_dir: Path) -> None:
    config = load_model(random_model_dir).config.model_dump()
    config["decoding"] = {"beam": 2, "rescoring": {"word_lm_file": "w.safetensors", "ctc_weight": 0.3}}
    with pytest.raises(ValidationError, match="ctc_head"):
        ModelConfig.model_validate(config)
    config["ctc_head"] = True
    assert ModelConfig.model_validate(config).decoding.rescoring.ctc_weight == 0.3


def test_streaming_steps_give_the_whole_utterance_ctc_frames(tmp_path: Path) -> None:
    """The server's per-chunk CTC log-probabilities, put together, are the whole utterance's."""
    model = load_model(save_random_model(tmp_path / "ctc", ctc_head=True))
    lm = build_word_lm(["x y z"] * 3, order=2, min_count=1)
    search = Search(SearchOptions(beam=3, rescoring=RescoringOptions(0.5, ctc_weight=0.3)), SearchResources(word_lm=lm))
    assert search.uses_ctc and not search.with_options(rescoring=RescoringOptions(0.5)).uses_ctc
    rng = np.random.default_rng(1)
    features = compute_fbank(rng.standard_normal(16000 * 2).astype(np.float32) * 0.1, 16000, model.config.features)
    steps: list[BatchOutput] = []
    decode_streams(model, search, [[features]], NO_ENDPOINTS, steps=steps, features=True)
    chunks = [step.streams[0].ctc_log_probs for step in steps]
    whole = search_utterances(model, search, torch.from_numpy(features)[None], torch.tensor([features.shape[0]]))[
        0
    ].ctc_log_probs
    streamed = torch.cat(chunks)
    assert streamed.shape == whole.shape and streamed.shape[0] > 10
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)


def test_bundle_attaches_the_training_ctc_head(tmp_path: Path) -> None:
    checkpoint = save_random_model(tmp_path / "checkpoint")
    model = load_model(checkpoint)
    d_model, vocab = model.config.encoder.d_model, model.tokenizer.vocab_size
    head = {"weight": torch.randn(vocab, d_model), "bias": torch.randn(vocab)}
    save_file(head, str(checkpoint / "ctc_head.safetensors"))
    (checkpoint / "trainer.json").write_text('{"step": 7}')
    out = bundle(checkpoint, tmp_path / "bundled")
    bundled = load_model(out)
    assert bundled.config.ctc_head and (out / "trainer.json").read_text() == '{"step": 7}'
    # Stored as fp16, like the rest of the bundled weights.
    torch.testing.assert_close(bundled.ctc_head.weight, head["weight"].half().float())
    encoder_out = torch.randn(1, 6, d_model)
    expected = (encoder_out @ head["weight"].half().float().T + head["bias"].half().float()).log_softmax(-1)
    torch.testing.assert_close(bundled.ctc_log_probs(encoder_out), expected, atol=1e-5, rtol=1e-5)
    # The transducer itself is unchanged by the attachment.
    attached = with_ctc_head(model, checkpoint / "ctc_head.safetensors")
    torch.testing.assert_close(attached.joiner.output.weight, model.joiner.output.weight)
    with pytest.raises(ValueError, match="no CTC head"):
        model.ctc_log_probs(encoder_out)
    # A checkpoint without a head file (an averaged one) gets none, unless one is named.
    averaged = save_random_model(tmp_path / "averaged", seed=1)
    assert load_model(bundle(averaged, tmp_path / "headless")).ctc_head is None
    named = load_model(bundle(averaged, tmp_path / "named", checkpoint / "ctc_head.safetensors"))
    torch.testing.assert_close(named.ctc_head.weight, head["weight"].half().float())
