"""The server's --int8 option: int8 encoder and joiner output on the CPU, close to float32, served."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
from asr_client.api.asr.v1 import asr_pb2_grpc
from asr_harness import ServerThread, config, finals, fixed_chunks, requests, requires_espeak, synthesize

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.quantize import is_quantized, quantize_for_cpu
from server.settings import parse_settings


def test_int8_is_off_unless_asked() -> None:
    assert parse_settings([]).int8 is False
    assert parse_settings(["--int8"]).int8 is True


def test_quantized_encoder_stays_close_to_float(random_model_dir: Path) -> None:
    model = load_model(random_model_dir)
    features = torch.randn(2, 200, model.config.features.num_mel_bins, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([200, 150])
    with torch.inference_mode():
        reference, _ = model.encode_utterances(features, lengths, streaming=True)
        quantize_for_cpu(model)
        assert is_quantized(model)
        quantized, _ = model.encode_utterances(features, lengths, streaming=True)
    relative = (quantized - reference).norm() / reference.norm()
    assert 0 < float(relative) < 0.05  # int8 really computes (not a float no-op), and stays close


def test_only_an_eval_mode_model_is_quantized(random_model_dir: Path) -> None:
    model = load_model(random_model_dir).train()
    with pytest.raises(ValueError, match="eval-mode"):
        quantize_for_cpu(model)


@requires_espeak
def test_an_int8_server_transcribes_speech() -> None:
    server = ServerThread([DEFAULT_MODEL_DIR], int8=True).start()
    try:
        assert all(is_quantized(engine.model) for engine in server.registry.engines.values())
        audio, rate = synthesize("the weather turned cold so the children stayed inside")
        with grpc.insecure_channel(server.target) as channel:
            responses = asr_pb2_grpc.RecognizerStub(channel).StreamingRecognize(
                requests(config(rate), fixed_chunks(audio, 3200)), timeout=60
            )
            text = " ".join(finals(responses))
        assert "children stayed inside" in text, text
    finally:
        server.stop()
