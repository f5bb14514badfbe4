"""Model-level streaming: chunk-by-chunk decoding equals whole-utterance decoding, alone or batched."""

from __future__ import annotations

from pathlib import Path

from model_helpers import check_batched_equals_alone, check_streamed_equals_whole, noisy_model

from server.search.options import Search


def test_step_by_step_equals_masked_whole_utterance(random_model_dir: Path) -> None:
    check_streamed_equals_whole(noisy_model(random_model_dir), Search())


def test_batched_streams_at_different_positions_equal_alone(random_model_dir: Path) -> None:
    """Round-robin batching of streams of different lengths, joining at different times."""
    check_batched_equals_alone(noisy_model(random_model_dir), Search())
