"""fit --cache-frozen-prefix: the encoder split at a block, the frozen prefix cache, and training on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from random_model import save_random_model, tiny_encoder_config
from safetensors.torch import save_file

from server.model.checkpoint import load_model
from server.model.config import FeatureConfig
from server.model.encoder import ConformerEncoder
from server.model.transducer import StreamingTransducer
from tests.test_speed_perturb import _tone_manifest
from tests.test_whisper_init import DIMS, _whisper_tensors
from training.batching import augment_prefix, collate
from training.cli import main as asr_train
from training.features import FEATURES_FILE, INDEX_FILE, FeatureCache
from training.objective import transducer_loss
from training.prefix_cache import PrefixCache, build_prefix_cache, prefix_fingerprint

FP16 = {"atol": 2e-3, "rtol": 2e-3}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _feature_cache(directory: Path, lengths: list[int], seed: int = 0) -> FeatureCache:
    """A feature cache of random (T_i, 80) fbank frames, written as build_feature_cache writes one."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    np.save(directory / FEATURES_FILE, rng.standard_normal((sum(lengths), 80)).astype(np.float16))
    texts = ["the quick brown fox", "call me back", "we will meet at nine", "how much", "turn left"]
    index = {
        "manifest": "none",
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).tolist(),
        "texts": [texts[i % len(texts)] for i in range(len(lengths))],
        "languages": ["en"] * len(lengths),
    }
    (directory / INDEX_FILE).write_text(json.dumps(index))
    return FeatureCache(directory)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StreamingTransducer:
    """The tiny random-init model (2 blocks, chunks of 4, 1 frame of lookahead), CMM experts silent."""
    directory = save_random_model(tmp_path_factory.mktemp("models") / "random", language_experts=True)
    return load_model(directory).eval()


@pytest.mark.parametrize("mask", [(-1, -1, -1), (None, None, 0), (3, 1, 2)], ids=["serving", "full", "chunks"])
def test_prefix_then_rest_is_the_whole_forward(mask: tuple[int | None, int | None, int]) -> None:
    torch.manual_seed(0)
    config = tiny_encoder_config(
        32, num_layers=3, conv_kernel=5, right_context=2, dropout=0.0, language_experts=True, language_expert_rank=4
    )
    encoder = ConformerEncoder(config, FeatureConfig(), num_languages=2).eval()
    assert encoder.experts is not None
    with torch.no_grad():  # experts that speak, so that their place in the split is checked too
        for experts in encoder.experts:
            experts.up.normal_(0, 0.1)
    features = torch.randn(3, 121, 80)
    lengths = torch.tensor([121, 90, 33])  # padded rows
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    with torch.no_grad():
        whole, whole_lengths = encoder(features, lengths, *mask, language_weights=weights)
        for num_layers in range(4):
            prefix, prefix_lengths = encoder.forward_prefix(features, lengths, num_layers, *mask, weights)
            assert prefix.shape == (3, 29, 32) and prefix_lengths.tolist() == [29, 21, 7]
            out, out_lengths = encoder.forward_from(prefix, prefix_lengths, num_layers, *mask, weights)
            assert torch.equal(out_lengths, whole_lengths)
            torch.testing.assert_close(out, whole, atol=1e-6, rtol=1e-6)
        with pytest.raises(ValueError, match="start_layer 4"):
            encoder.forward_from(prefix, prefix_lengths, 4)


def test_cached_rows_are_each_utterance_alone_and_weights_change_the_fingerprint(
    model: StreamingTransducer, tmp_path: Path
) -> None:
    source = _feature_cache(tmp_path / "features-train", [203, 57, 150, 6, 99, 180])
    # Small batches: several of them, and padded rows in each.
    cache = build_prefix_cache(model, source, 1, tmp_path / "prefix-train", batch_frames=400)
    assert isinstance(cache, PrefixCache) and cache.num_layers == 1
    assert cache.cache_dir == tmp_path / "prefix-train" / "features-train"
    assert len(cache) == len(source) and cache.texts == source.texts and cache.languages == source.languages
    with torch.no_grad():
        for i in [0, 1, 2, 4, 5]:
            features = torch.from_numpy(np.asarray(source[i], dtype=np.float32))[None]
            alone, lengths = model.encoder.forward_prefix(features, torch.tensor([source.length(i)]), 1)
            assert cache.length(i) == int(lengths[0]) and cache[i].dtype == np.float16
            torch.testing.assert_close(torch.from_numpy(np.asarray(cache[i], dtype=np.float32)), alone[0], **FP16)
    assert cache.length(3) == 0  # 6 fbank frames: no encoder frame, nothing to compute

    # A weight above the prefix leaves the cache as it is; a frozen one makes it stale.
    first_row = np.array(cache[0])
    index_file = cache.cache_dir / INDEX_FILE
    written = index_file.stat().st_mtime_ns
    with torch.no_grad():
        model.encoder.layers[1].ffn2.net[1].weight.add_(1.0)
        assert build_prefix_cache(model, source, 1, tmp_path / "prefix-train").fingerprint == cache.fingerprint
        assert index_file.stat().st_mtime_ns == written
        assert prefix_fingerprint(model, 2, source) != cache.fingerprint
        model.encoder.layers[0].ffn2.net[1].weight.add_(1e-3)
        try:
            rebuilt = build_prefix_cache(model, source, 1, tmp_path / "prefix-train", batch_frames=400)
        finally:
            model.encoder.layers[0].ffn2.net[1].weight.sub_(1e-3)
            model.encoder.layers[1].ffn2.net[1].weight.sub_(1.0)
    assert isinstance(rebuilt, PrefixCache) and rebuilt.fingerprint != cache.fingerprint
    assert not np.array_equal(np.asarray(rebuilt[0]), first_row)


def test_an_interrupted_build_goes_on_where_it_stopped(model: StreamingTransducer, tmp_path: Path) -> None:
    source = _feature_cache(tmp_path / "features-train", [120, 80, 140, 60, 100], seed=1)
    complete = build_prefix_cache(model, source, 1, tmp_path / "prefix-train", batch_frames=300)
    assert isinstance(complete, PrefixCache)
    expected = [np.array(complete[i]) for i in range(len(complete))]
    # As a build killed after its first batch leaves it: index says 1 batch done, the rest unwritten.
    index_file = complete.cache_dir / INDEX_FILE
    index = json.loads(index_file.read_text())
    index_file.write_text(json.dumps({**index, "batches_done": 1, "complete": False}))
    with pytest.raises(ValueError, match="not a complete prefix cache"):
        PrefixCache(complete.cache_dir)
    frames = np.load(complete.cache_dir / FEATURES_FILE, mmap_mode="r+")
    frames[:] = 7.0  # the first batch's rows too: those are kept, not computed again
    frames.flush()
    del frames
    resumed = build_prefix_cache(model, source, 1, tmp_path / "prefix-train", batch_frames=300)
    assert isinstance(resumed, PrefixCache)
    kept = [i for i in range(len(source)) if np.all(np.asarray(resumed[i]) == 7.0)]
    assert 0 < len(kept) < len(source)
    for i in set(range(len(source))) - set(kept):
        np.testing.assert_array_equal(np.asarray(resumed[i]), expected[i])


def test_speaking_frozen_experts_cannot_be_cached(model: StreamingTransducer, tmp_path: Path) -> None:
    source = _feature_cache(tmp_path / "features-train", [100])
    assert model.encoder.experts is not None
    up = model.encoder.experts[0].up
    with torch.no_grad():
        up[0, 0, 0] = 0.5
        try:
            with pytest.raises(ValueError, match="language experts are not zero"):
                build_prefix_cache(model, source, 1, tmp_path / "prefix-train")
        finally:
            up.zero_()


def test_the_loss_on_the_cached_prefix_is_the_loss_on_the_features(model: StreamingTransducer, tmp_path: Path) -> None:
    source = _feature_cache(tmp_path / "features-train", [203, 150, 96, 180], seed=2)
    cache = build_prefix_cache(model, source, 1, tmp_path / "prefix-train", batch_frames=500)
    indices = [0, 2, 3]
    weights = torch.ones(3, 1)
    from_features = collate(source, indices, model.tokenizer)
    from_cache = collate(cache, indices, model.tokenizer)
    from_features.language_weights = from_cache.language_weights = weights
    from_cache.encoded_layers = 1
    assert from_cache.features.shape == (3, 50, 32) and from_cache.feature_lengths.tolist() == [50, 23, 44]
    ctc_head = torch.nn.Linear(32, model.config.tokenizer.vocab_size)
    config = model.config.encoder
    serving = (config.chunk_size, config.left_chunks, config.right_context)
    with torch.no_grad():
        expected = transducer_loss(model, from_features, serving, ctc_head, 0.3)
        got = transducer_loss(model, from_cache, serving, ctc_head, 0.3)
        # A batch that draws full context gets it above the prefix (the cache holds the serving mask's).
        prefix, _ = model.encoder.forward_prefix(from_features.features, from_features.feature_lengths, 1)
        exact = collate(cache, indices, model.tokenizer)
        exact.features, exact.encoded_layers, exact.language_weights = prefix, 1, weights
        expected_full = transducer_loss(model, exact, (None, None, 0), ctc_head, 0.3)
        got_full = transducer_loss(model, from_cache, (None, None, 0), ctc_head, 0.3)
    for name in ("total", "rnnt", "ctc"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(getattr(got_full, name), getattr(expected_full, name), atol=1e-3, rtol=1e-3)
    assert float(got.ctc) > 0


def test_time_masks_on_the_prefix_fill_each_channel_with_its_mean() -> None:
    frames = torch.randn(2, 400, 8) + torch.arange(8.0) * 10
    original = frames.clone()
    augment_prefix(frames, torch.tensor([400, 120]), torch.Generator().manual_seed(0))
    assert torch.equal(frames[1, 120:], original[1, 120:]), "padding untouched"
    changed = (frames != original).any(dim=2)
    for row, length in enumerate([400, 120]):
        masked = changed[row, :length]
        assert 0 < int(masked.sum()) <= 0.2 * length
        torch.testing.assert_close(frames[row, masked.nonzero()[0, 0]], original[row, :length].mean(dim=0))


def _converted_whisper(directory: Path) -> Path:
    """A tiny converted Whisper encoder (tests/test_whisper_init.py's), as asr-train convert-whisper writes it."""
    directory.mkdir()
    tensors = {name: tensor.contiguous() for name, tensor in _whisper_tensors().items()}
    save_file(tensors, str(directory / "encoder.safetensors"))
    (directory / "encoder.json").write_text(json.dumps({"dims": DIMS}))
    return directory


def test_fit_trains_on_the_cached_prefix_and_resumes_with_or_without_it(tmp_path: Path) -> None:
    manifest = _tone_manifest(tmp_path)
    rows = [
        {**json.loads(line), "language": language}
        for line, language in zip(manifest.read_text().splitlines(), ["en", "de"], strict=True)
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))  # a CMM model of two languages
    exp_dir = tmp_path / "exp"
    common = ["fit", "--train-manifest", str(manifest), "--valid-manifest", str(manifest), "--exp-dir", str(exp_dir)]
    common += ["--warmup-steps", "2", "--valid-every", "1000", "--jobs", "1", "--threads", "1"]
    common += ["--spec-augment-after", "1", "--freeze-encoder-layers", "1", "--cache-frozen-prefix"]
    with pytest.raises(SystemExit, match="needs --freeze-encoder-layers"):
        asr_train([*common[:-3], "--cache-frozen-prefix", "--max-steps", "1"])
    whisper = ["--whisper-encoder", str(_converted_whisper(tmp_path / "whisper")), "--whisper-layers", "1"]
    whisper += ["--new-layers", "1", "--whisper-ffn-dim", "64", "--vocab-size", "14"]
    assert asr_train([*common, *whisper, "--max-steps", "3"]) == 0
    index_file = exp_dir / "prefix-train" / "features-train" / INDEX_FILE
    index = json.loads(index_file.read_text())
    assert index["complete"] and index["num_layers"] == 1 and index["texts"] == ["tone number 0", "tone number 1"]
    records = [json.loads(line) for line in (exp_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in records)
    trainer = json.loads((exp_dir / "latest" / "trainer.json").read_text())
    # Every step's batch holds both tones: hours seen counts their fbank frames, as without the cache.
    source = FeatureCache(exp_dir / "features-train")
    seconds = (source.length(0) + source.length(1)) / 100
    assert trainer["hours_seen"] == pytest.approx(3 * seconds / 3600)

    written = index_file.stat().st_mtime_ns
    assert asr_train([*common, "--resume", "--max-steps", "5"]) == 0
    assert index_file.stat().st_mtime_ns == written, "the same frozen weights: the cache is reused"
    assert json.loads((exp_dir / "latest" / "trainer.json").read_text())["step"] == 5
    # The checkpoint is the model's, whichever way it trained: it goes on without the cache too.
    assert asr_train([*common[:-1], "--resume", "--max-steps", "6"]) == 0
    assert json.loads((exp_dir / "latest" / "trainer.json").read_text())["step"] == 6
