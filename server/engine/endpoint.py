"""Endpointing: when does the utterance in progress end?

Two rules, as in Riva and Kaldi's online endpointer:
- trailing silence: the model has emitted only blanks for ``trailing_silence_ms`` since the
  last token of an utterance that has tokens;
- maximum length: the utterance has lasted ``max_utterance_ms`` since it began (then it is
  cut even in the middle of speech, so results stay bounded in size and latency).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRAILING_SILENCE_MS = 800
DEFAULT_MAX_UTTERANCE_MS = 20_000


@dataclass(frozen=True)
class EndpointConfig:
    trailing_silence_ms: int = DEFAULT_TRAILING_SILENCE_MS
    max_utterance_ms: int = DEFAULT_MAX_UTTERANCE_MS


class Endpointer:
    """Tracks one stream's utterance boundary in encoder frames."""

    def __init__(self, config: EndpointConfig, frame_shift_ms: int) -> None:
        # Round up: an endpoint never fires before the configured duration.
        self.silence_frames = max(1, -(-config.trailing_silence_ms // frame_shift_ms))
        self.max_frames = max(1, -(-config.max_utterance_ms // frame_shift_ms))
        self.utterance_start = 0  # first encoder frame of the utterance in progress

    def is_endpoint(self, frames_done: int, last_token_frame: int | None) -> bool:
        """Whether the utterance ends after ``frames_done`` encoder frames.

        ``last_token_frame`` None means the utterance has no tokens yet: leading silence
        never makes an endpoint, it only moves the utterance start (see ``skip_silence``).
        """
        if last_token_frame is None:
            return False
        if frames_done - (last_token_frame + 1) >= self.silence_frames:
            return True
        return frames_done - self.utterance_start >= self.max_frames

    def skip_silence(self, frames_done: int) -> None:
        """No tokens yet: the utterance cannot have started before ``frames_done``."""
        self.utterance_start = frames_done

    def start_utterance(self, frames_done: int) -> None:
        self.utterance_start = frames_done
