"""Running espeak-ng: one process per utterance, WAV on stdout, prosody from the options or SSML."""

from __future__ import annotations

import io
import subprocess
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

ESPEAK = "espeak-ng"


def _espeak_command(
    text: str, voice: str, rate: int, pitch: int, word_gap: int = 0, pitch_range: int | None = None
) -> list[str]:
    command = [ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch), "-g", str(word_gap), "--stdout"]
    if pitch_range is None:
        return [*command, text]
    # The command line has no pitch-range option; SSML prosody has one.
    return [*command, "-m", f'<speak><prosody range="{pitch_range}%">{escape(text)}</prosody></speak>']


def run_espeak(
    text: str, voice: str, rate: int, pitch: int, word_gap: int = 0, pitch_range: int | None = None
) -> tuple[np.ndarray, int]:
    """Mono float32 speech from one espeak-ng process (WAV on stdout, no temporary file)."""
    command = _espeak_command(text, voice, rate, pitch, word_gap, pitch_range)
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed ({result.returncode}) for voice {voice!r}: {message}")
    audio, sample_rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    return audio[:, 0], int(sample_rate)
