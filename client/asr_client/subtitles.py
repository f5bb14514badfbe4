"""SubRip (.srt) and WebVTT (.vtt) subtitles from final results, written as the finals arrive.

With word times a final becomes cues of at most ``MAX_CUE_LINES`` lines of ``LINE_CHARS`` and at
most ``MAX_CUE_SECONDS``, each timed by its own words; without them, one cue spanning the result.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from google.protobuf.duration_pb2 import Duration

from asr_client.api.asr.v1 import asr_pb2

FORMATS = ("srt", "vtt")
# Common subtitle guidelines: about 42 characters a line, two lines, a few seconds a cue.
LINE_CHARS = 42
MAX_CUE_LINES = 2
MAX_CUE_SECONDS = 7.0


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def _seconds(duration: Duration) -> float:
    return duration.ToTimedelta().total_seconds()


def cues_of(result: asr_pb2.StreamingRecognitionResult, prefix: str = "") -> list[Cue]:
    """The cues of one final result; ``prefix`` (a speaker or channel label) opens each."""
    alternative = result.alternatives[0]
    if not alternative.words:
        return [Cue(_seconds(result.start_time), _seconds(result.end_time), prefix + alternative.transcript)]
    return [
        Cue(_seconds(group[0].start_time), _seconds(group[-1].end_time), prefix + " ".join(w.word for w in group))
        for group in _word_groups(alternative.words, prefix)
    ]


def _word_groups(words: Sequence[asr_pb2.WordInfo], prefix: str) -> list[list[asr_pb2.WordInfo]]:
    """Consecutive words in groups that fit one cue: two wrapped lines, ``MAX_CUE_SECONDS``."""
    groups: list[list[asr_pb2.WordInfo]] = []
    for word in words:
        if groups:
            candidate = [*groups[-1], word]
            fits = len(wrapped(prefix + " ".join(w.word for w in candidate))) <= MAX_CUE_LINES
            short = _seconds(word.end_time) - _seconds(candidate[0].start_time) <= MAX_CUE_SECONDS
            if fits and short:
                groups[-1].append(word)
                continue
        groups.append([word])
    return groups


def wrapped(text: str) -> list[str]:
    """A cue's text in lines of at most ``LINE_CHARS`` (a longer word is cut)."""
    return textwrap.wrap(text, LINE_CHARS) or [""]


def timestamp(seconds: float, fmt: str) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    separator = "," if fmt == "srt" else "."
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


class SubtitleWriter:
    """Writes numbered SRT cues, or a WebVTT file, one cue at a time (flushed: a live stream's
    subtitles grow as it is recognised)."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"subtitle format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        self._out = out
        self._fmt = fmt
        self._count = 0
        if fmt == "vtt":
            out.write("WEBVTT\n\n")

    def write(self, cue: Cue) -> None:
        self._count += 1
        lines = wrapped(cue.text)
        # A cue needs a positive duration to be shown at all.
        end_s = max(cue.end_s, cue.start_s + 0.001)
        head = f"{self._count}\n" if self._fmt == "srt" else ""
        span = f"{timestamp(cue.start_s, self._fmt)} --> {timestamp(end_s, self._fmt)}"
        self._out.write(head + span + "\n" + "\n".join(lines) + "\n\n")
        self._out.flush()
