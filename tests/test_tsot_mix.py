"""Two-talker t-SOT mixtures: a tiny set synthesized at test time (espeak-ng), aligned with en-small."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.tokenizer import CHANNEL_CHANGE_PIECE
from server.model.transducer import StreamingTransducer
from training.signal_ops import resample, trim_silence
from training.synth import synthesize_sentence
from training.text_normalize import normalize_text
from training.tsot import mix

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SENTENCES = [
    ("please call me back tomorrow morning", "en-us"),
    ("the weather is nice today", "en-gb"),
    ("she bought three apples at the market", "en-us"),
    ("we will meet at the station", "en-gb"),
]


def write_sources(folder: Path) -> Path:
    """Four single-talker utterances, two voices, 0.3 s of silence either side: their manifest."""
    (folder / "audio").mkdir(parents=True)
    rows = []
    for number, (text, voice) in enumerate(SENTENCES, 1):
        speech, rate = synthesize_sentence(text, voice=voice, sample_rate=16000)
        pad = np.zeros(int(0.3 * rate), np.float32)
        audio = np.concatenate([pad, trim_silence(speech, rate), pad])
        path = f"audio/{number:07d}.wav"
        sf.write(str(folder / path), audio, rate, subtype="PCM_16")
        rows.append({"audio": path, "text": text, "language": "en", "voice": voice})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


@pytest.fixture(scope="module")
def model() -> StreamingTransducer:
    return load_model(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def mixture_set(tmp_path_factory: pytest.TempPathFactory, model: StreamingTransducer) -> Path:
    root = tmp_path_factory.mktemp("tsot")
    sources = write_sources(root / "single")
    return mix.build(sources, root / "mixed", 4, seed=3, model=model, single_fraction=0.3, augment_prob=0.0)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_single_rows_spread_evenly() -> None:
    for fraction in (0.0, 0.3, 0.5, 1.0):
        flags = [mix.is_single(index, fraction) for index in range(1, 101)]
        for n in range(1, 101):
            assert sum(flags[:n]) >= fraction * n - 1e-9


def test_rows_have_the_fields_and_bounds(mixture_set: Path) -> None:
    rows = _rows(mixture_set)
    assert [row["index"] for row in rows] == [1, 2, 3, 4]
    texts = {normalize_text(text) for text, _ in SENTENCES}
    assert sum(len(row["speakers"]) == 1 for row in rows) >= 0.3 * len(rows)
    assert any(len(row["speakers"]) == 2 for row in rows)
    for row in rows:
        audio, rate = sf.read(str(mixture_set.parent / row["audio"]), dtype="float32")
        assert rate == 16000 and audio.ndim == 1
        assert row["duration"] == pytest.approx(audio.size / rate, abs=1e-3)
        assert row["language"] == "en"
        speakers = row["speakers"]
        assert [s["start"] for s in speakers] == sorted(s["start"] for s in speakers)
        assert row["text"] == " ".join(s["text"] for s in speakers)
        for speaker in speakers:
            assert normalize_text(speaker["text"]) in texts
            assert 0.0 <= speaker["start"] < speaker["end"] <= row["duration"] + 0.05
        if len(speakers) == 1:
            assert CHANNEL_CHANGE_PIECE not in row["tsot_pieces"]
            assert row["offset_s"] is None
        else:
            assert speakers[0]["voice"] != speakers[1]["voice"]
            assert abs(row["relative_db"]) <= mix.MAX_RELATIVE_DB
            # The second talker starts within the first one's audio: full overlap to none.
            first = min(speakers, key=lambda speaker: speaker["offset_s"])
            assert 0.0 <= row["offset_s"] <= first["end"] + 1.0


def test_levels_and_offsets_are_what_the_rows_say(mixture_set: Path, model: StreamingTransducer) -> None:
    """With no augmentation a mixture is a x first + b x (second from offset_s): fit a and b, and
    compare the talkers' speech levels with relative_db."""
    cache = mix.AlignmentCache(mixture_set.parent / mix.ALIGNMENTS, model)
    sources = {str(s.audio): s for s in mix.read_sources(mixture_set.parent.parent / "single" / "manifest.jsonl")}
    for row in [row for row in _rows(mixture_set) if len(row["speakers"]) == 2]:
        audio, rate = sf.read(str(mixture_set.parent / row["audio"]), dtype="float32")
        talkers = sorted(row["speakers"], key=lambda speaker: speaker["offset_s"])
        assert talkers[0]["offset_s"] == 0.0 and talkers[1]["offset_s"] == row["offset_s"]
        basis = np.zeros((audio.size, 2), np.float32)  # (n, 2): each source where it starts
        levels = []
        for column, speaker in enumerate(talkers):
            source = sources[speaker["source"]]
            samples, source_rate = sf.read(str(source.audio), dtype="float32")
            samples = resample(samples, source_rate, rate)
            start = round(speaker["offset_s"] * rate)
            basis[start : start + samples.size, column] = samples[: audio.size - start]
            alignment = cache.get(source, samples, rate)
            assert alignment is not None
            levels.append(mix.speech_rms(samples, rate, alignment))
        gains, *_ = np.linalg.lstsq(basis, audio, rcond=None)
        residual = float(np.sum((basis @ gains - audio) ** 2))
        assert residual < 1e-4 * float(np.sum(audio**2))  # exactly the two sources (16-bit FLAC aside)
        relative_db = 20 * np.log10(gains[1] * levels[1] / (gains[0] * levels[0]))
        assert relative_db == pytest.approx(row["relative_db"], abs=0.1)
        assert abs(relative_db) <= mix.MAX_RELATIVE_DB + 0.1


def test_targets_deserialize_to_each_talker(mixture_set: Path) -> None:
    for row in _rows(mixture_set):
        channels = [text for text in mix.channel_texts(row["tsot_pieces"]) if text]
        assert sorted(channels) == sorted(normalize_text(s["text"]) for s in row["speakers"])
        if len(row["speakers"]) == 2:
            assert CHANNEL_CHANGE_PIECE in row["tsot_pieces"]


def test_resume_keeps_rows_and_reuses_alignments(mixture_set: Path, model: StreamingTransducer, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(mixture_set.parent, folder)  # the module's set stays as it is for the other tests
    manifest = folder / mix.MANIFEST
    before = manifest.read_text()
    aligned = (folder / mix.ALIGNMENTS).read_text()
    sources = mixture_set.parent.parent / "single" / "manifest.jsonl"
    mix.build(sources, folder, 5, seed=3, model=model, single_fraction=0.3, augment_prob=0.0)
    after = manifest.read_text()
    assert after.startswith(before) and len(after.splitlines()) == 5
    assert len((folder / mix.ALIGNMENTS).read_text().splitlines()) == len(aligned.splitlines())
    with pytest.raises(SystemExit, match="made with"):
        mix.build(sources, folder, 5, seed=4, model=model)


def test_eval_multi_talker_reports_cpwer(mixture_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end on the tiny set with en-small (one channel only: no figure is asserted)."""
    from training.cli import main

    assert main(["eval", "--model", str(DEFAULT_MODEL_DIR), "--manifest", str(mixture_set), "--multi-talker"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == summary["utterances"] == 4
    assert all(len(row["hyps"]) == 2 for row in rows)
    assert summary["cpwer"] >= 0.0 and summary["reference_words"] > 0
    assert summary["multi_talker_utterances"] == 2
    single = summary["single_talker"]
    assert single["utterances"] == 2
    assert single["wer_multi_talker_on"] >= 0.0 and single["wer_multi_talker_off"] >= 0.0
    # A model without <cc> never opens a second channel.
    assert single["second_channel_rate"] == 0.0
    assert summary["model_multi_talker"] is False


def test_offsets_in_seconds_at_equal_level(mixture_set: Path, model: StreamingTransducer, tmp_path: Path) -> None:
    """``offset_seconds`` and ``max_relative_db`` 0 shape a set like a test's: the second talker
    starts within the range, at the first one's speech level."""
    sources = mixture_set.parent.parent / "single" / "manifest.jsonl"
    manifest = mix.build(
        sources, tmp_path / "eq", 6, seed=5, model=model, single_fraction=0.0, augment_prob=0.0,
        offset_seconds=(0.5, 0.9), max_relative_db=0.0,
    )  # fmt: skip
    rows = [row for row in _rows(manifest) if row["offset_s"] is not None]
    assert rows and all(0.5 <= row["offset_s"] <= 0.9 and row["relative_db"] == 0.0 for row in rows)
    with pytest.raises(ValueError, match="offset_seconds"):
        mix.build(sources, tmp_path / "bad", 2, seed=5, model=model, offset_seconds=(1.0, 0.5))


def test_fit_reads_the_serialized_pieces_as_targets(
    mixture_set: Path, model: StreamingTransducer, tmp_path: Path
) -> None:
    """A training batch of the mixtures holds each row's ``tsot_pieces`` as ids, ``<cc>`` included
    (not the tokenized joined text), and such data makes the model multi-talker."""
    from training.batching import collate
    from training.features import FeatureCache, build_feature_cache
    from training.fit import enable_multi_talker

    cache = FeatureCache(build_feature_cache(mixture_set, tmp_path / "features", jobs=1))
    rows = _rows(mixture_set)
    batch = collate(cache, list(range(len(rows))), model.tokenizer)
    cc = model.tokenizer.pieces_to_ids([CHANNEL_CHANGE_PIECE])[0]
    for row, (targets, length) in enumerate(zip(batch.targets, batch.target_lengths, strict=True)):
        ids = targets[: int(length)].tolist()
        assert [model.tokenizer.id_to_piece(i) for i in ids] == rows[row]["tsot_pieces"]
        assert (cc in ids) == (len(rows[row]["speakers"]) == 2)
    with pytest.raises(ValueError, match="no piece"):
        model.tokenizer.pieces_to_ids(["▁the", "<nonsense>"])
    tsot = load_model(DEFAULT_MODEL_DIR)
    enable_multi_talker(tsot)
    assert tsot.config.multi_talker and tsot.tokenizer.cc_id == cc
