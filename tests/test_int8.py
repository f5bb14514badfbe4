"""int8 on the CPU (the server's --int8, its default): calibrated input ranges, close to float32,
streams independent of their batch mates, served."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from asr_client.api.asr.v1 import asr_pb2_grpc
from asr_harness import ServerThread, config, finals, fixed_chunks, requests, requires_espeak, synthesize
from model_helpers import check_batched_equals_alone, noisy_model

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.quantize import (
    StaticInt8Linear,
    int8_available,
    is_quantized,
    quantize_for_cpu,
    quantized_layers,
    read_ranges,
    write_ranges,
)
from server.search.loading import load_model_and_search
from server.search.options import Search, SearchOptions
from server.settings import parse_settings
from training.calibrate_int8 import input_ranges

pytestmark = pytest.mark.skipif(not int8_available(), reason="no fbgemm int8 linear in this torch build")


def test_int8_is_on_unless_turned_off() -> None:
    assert parse_settings([]).int8 is True
    assert parse_settings(["--no-int8"]).int8 is False


def test_the_bundled_model_has_calibrated_ranges_for_every_quantized_layer() -> None:
    model = load_model(DEFAULT_MODEL_DIR)
    ranges = read_ranges(DEFAULT_MODEL_DIR)
    assert ranges is not None and set(ranges) == set(quantized_layers(model))
    assert all(value > 0 for value in ranges.values())


def test_a_layer_computes_the_float_product_to_within_quantization() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(5, 7, 64)
    quantized = StaticInt8Linear(linear, float(x.abs().max()))
    with torch.no_grad():
        reference = linear(x)
        out = quantized(x)
    assert out.shape == reference.shape
    relative = (out - reference).norm() / reference.norm()
    assert 0 < float(relative) < 0.02  # int8 really computes (not the float layer), and stays close
    # Each row alone gives what it gives in the batch: a fixed input scale couples nothing.
    with torch.no_grad():
        assert torch.equal(quantized(x[2:3, 4:5]), out[2:3, 4:5])


def _calibrated(random_model_dir: Path):
    model = noisy_model(random_model_dir)
    search = Search(SearchOptions(beam=4))
    rng = np.random.default_rng(0)
    ranges = input_ranges(model, search, [0.1 * rng.standard_normal(16000).astype(np.float32) for _ in range(3)])
    return model, search, ranges


def test_calibration_covers_every_layer_and_the_int8_encoder_stays_close(random_model_dir: Path) -> None:
    model, _, ranges = _calibrated(random_model_dir)
    assert set(ranges) == set(quantized_layers(model))
    features = torch.randn(2, 120, model.config.features.num_mel_bins, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([120, 90])
    with torch.inference_mode():
        reference, _ = model.encode_utterances(features, lengths, streaming=True)
        quantize_for_cpu(model, ranges)
        assert is_quantized(model)
        quantized, _ = model.encode_utterances(features, lengths, streaming=True)
    assert float((quantized - reference).norm() / reference.norm()) < 0.1


def test_an_int8_model_gives_each_stream_what_it_gets_alone(random_model_dir: Path) -> None:
    model, search, ranges = _calibrated(random_model_dir)
    quantize_for_cpu(model, ranges)
    check_batched_equals_alone(model, search)


def test_ranges_round_trip_and_only_an_eval_model_on_the_cpu_is_quantized(tmp_path: Path) -> None:
    write_ranges(tmp_path, {"joiner.output": 1.5}, {"manifest": "dev"})
    assert read_ranges(tmp_path) == {"joiner.output": 1.5}
    assert read_ranges(tmp_path / "none") is None
    model, _ = load_model_and_search(DEFAULT_MODEL_DIR)
    with pytest.raises(ValueError, match="eval-mode"):
        quantize_for_cpu(model.train(), {})


def test_eval_int8_asks_for_calibration_first(random_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(random_model_dir, model_dir)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "eval",
            "--model",
            str(model_dir),
            "--manifest",
            str(manifest),
            "--int8",
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode != 0 and b"calibrate-int8" in done.stderr


@requires_espeak
def test_the_server_serves_the_bundled_model_int8_and_a_model_without_ranges_float(random_model_dir: Path) -> None:
    server = ServerThread([DEFAULT_MODEL_DIR, random_model_dir], int8=True).start()
    try:
        quantized = {name: is_quantized(engine.model) for name, engine in server.registry.engines.items()}
        assert quantized == {"en-small": True, load_model(random_model_dir).config.name: False}
        audio, rate = synthesize("the weather turned cold so the children stayed inside")
        with grpc.insecure_channel(server.target) as channel:
            responses = asr_pb2_grpc.RecognizerStub(channel).StreamingRecognize(
                requests(config(rate, model="en-small"), fixed_chunks(audio, 3200)), timeout=60
            )
            text = " ".join(finals(responses))
        assert "children stayed inside" in text, text
    finally:
        server.stop()
