"""How the CLI shows responses: JSON lines, text with live partials on a terminal, or subtitles."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asr_client.api.asr.v1 import asr_pb2
from asr_client.subtitles import SubtitleWriter, cues_of


@dataclass(frozen=True)
class Labels:
    """Which labels open a result's line: the speaker (multi-talker), the input channel (per channel)."""

    multi_talker: bool = False
    per_channel: bool = False

    def of(self, result: asr_pb2.StreamingRecognitionResult) -> str:
        """ "[channel 1] [speaker 2] " and the like; "" when neither applies."""
        parts = []
        if self.per_channel:
            parts.append(f"[channel {result.audio_channel}] ")
        if self.multi_talker:
            parts.append(f"[speaker {result.channel + 1}] ")
        return "".join(parts)


# How the text output names the speech events (speech_event_type) of responses.
EVENT_NAMES = {
    asr_pb2.SPEECH_ACTIVITY_BEGIN: "speech begins",
    asr_pb2.SPEECH_ACTIVITY_END: "speech ends",
    asr_pb2.END_OF_SINGLE_UTTERANCE: "end of single utterance",
    asr_pb2.SPEECH_ACTIVITY_TIMEOUT: "speech activity timeout",
}


def event_line(response: asr_pb2.StreamingRecognizeResponse) -> str | None:
    """ "[speech begins at 1.02 s]" for a response that announces a speech event; else None."""
    event = response.speech_event_type
    if event == asr_pb2.SPEECH_EVENT_UNSPECIFIED:
        return None
    name = EVENT_NAMES.get(event, _event_type_name(event))
    return f"[{name} at {response.speech_event_time.ToTimedelta().total_seconds():.2f} s]"


def _event_type_name(event: int) -> str:
    """The enum name of a speech event ("SPEECH_ACTIVITY_BEGIN"); the number if this client lacks it."""
    return asr_pb2.SpeechEventType.Name(event) if event in asr_pb2.SpeechEventType.values() else str(event)


class FileTranscript:
    """The final results of one file, accumulated in order, and the speech events."""

    def __init__(self) -> None:
        self.results: list[asr_pb2.StreamingRecognitionResult] = []  # finals with a transcript
        self.audio_seconds = 0.0
        self.events: list[dict[str, object]] = []  # {"type": "SPEECH_ACTIVITY_BEGIN", "time": 1.02}

    def add(self, response: asr_pb2.StreamingRecognizeResponse) -> None:
        if response.speech_event_type != asr_pb2.SPEECH_EVENT_UNSPECIFIED:
            time = response.speech_event_time.ToTimedelta().total_seconds()
            self.events.append({"type": _event_type_name(response.speech_event_type), "time": time})
        if response.HasField("audio_processed"):  # an event's response has none: the last one holds
            self.audio_seconds = response.audio_processed.ToTimedelta().total_seconds()
        for result in response.results:
            if result.is_final and result.alternatives and result.alternatives[0].transcript:
                self.results.append(result)

    @property
    def finals(self) -> list[tuple[int, str]]:
        """(virtual channel, transcript) of each final."""
        return [(result.channel, result.alternatives[0].transcript) for result in self.results]

    @property
    def text(self) -> str:
        return " ".join(text for _, text in self.finals)

    def channel_texts(self) -> dict[str, str]:
        """The transcript of each virtual (speaker) channel."""
        return _joined((result.channel, result.alternatives[0].transcript) for result in self.results)

    def audio_channel_texts(self) -> dict[str, str]:
        """The transcript of each input channel (per-channel recognition)."""
        return _joined((result.audio_channel, result.alternatives[0].transcript) for result in self.results)


def _joined(pairs: Iterable[tuple[int, str]]) -> dict[str, str]:
    channels: dict[int, list[str]] = {}
    for channel, text in pairs:
        channels.setdefault(channel, []).append(text)
    return {str(channel): " ".join(texts) for channel, texts in sorted(channels.items())}


def print_json_stream(
    name: str,
    responses: Iterable[asr_pb2.StreamingRecognizeResponse],
    multi_talker: bool,
    out: TextIO = sys.stdout,
    *,
    per_channel: bool = False,
) -> FileTranscript:
    """One JSON object per response (all alternatives, speech events), then ``{"file", "text", ...}``
    with the whole transcript (of the best alternatives) and, when any came, ``speech_events``."""
    transcript = FileTranscript()
    for response in responses:
        transcript.add(response)
        fields = MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        record = {"file": name, **fields}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    summary: dict[str, object] = {
        "file": name,
        "text": transcript.text,
        "audio_seconds": transcript.audio_seconds,
    }
    if multi_talker:
        summary["channels"] = transcript.channel_texts()
    if per_channel:
        summary["audio_channels"] = transcript.audio_channel_texts()
    if transcript.events:
        summary["speech_events"] = transcript.events
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    out.flush()
    return transcript


def words_line(result: asr_pb2.StreamingRecognitionResult) -> str | None:
    """The result's words with their times in seconds ("  hello 0.48-0.72  world 0.72-1.20"), or None."""
    words = result.alternatives[0].words if result.alternatives else []
    if not words:
        return None
    timed = (
        f"{w.word} {w.start_time.ToTimedelta().total_seconds():.2f}-{w.end_time.ToTimedelta().total_seconds():.2f}"
        + (f" ({w.confidence:.2f})" if w.confidence else "")
        for w in words
    )
    return "  " + "  ".join(timed)


def alternative_lines(result: asr_pb2.StreamingRecognitionResult) -> list[str]:
    """The alternatives after the best, numbered from 2, with their confidence ("  #2 hello word (0.12)")."""
    return [
        f"  #{rank} {alternative.transcript}" + (f" ({alternative.confidence:.2f})" if alternative.confidence else "")
        for rank, alternative in enumerate(result.alternatives[1:], start=2)
    ]


def _final_lines(result: asr_pb2.StreamingRecognitionResult, labels: Labels, words: bool) -> list[str]:
    text = result.alternatives[0].transcript if result.alternatives else ""
    lines = [labels.of(result) + text]
    timed = words_line(result) if words else None
    if timed is not None:
        lines.append(timed)
    return lines + alternative_lines(result)


def _response_lines(response: asr_pb2.StreamingRecognizeResponse, labels: Labels, words: bool) -> list[str]:
    """What text mode prints for a response: its finals (and their word and alternative lines), its event."""
    lines = [line for result in response.results if result.is_final for line in _final_lines(result, labels, words)]
    event = event_line(response)
    return lines if event is None else [*lines, event]


def _partial_key(result: asr_pb2.StreamingRecognitionResult) -> tuple[int, int]:
    return (result.audio_channel, result.channel)


def print_text_stream(
    name: str,
    responses: Iterable[asr_pb2.StreamingRecognizeResponse],
    multi_talker: bool,
    console: Console,
    show_name: bool,
    *,
    per_channel: bool = False,
    words: bool = False,
) -> FileTranscript:
    """Finals as lines (with ``words``, a line of word times after each, then a line per further
    alternative), speech events as "[speech begins at 1.02 s]"; on a terminal the partials of the
    utterances in progress update in place."""
    transcript = FileTranscript()
    labels = Labels(multi_talker, per_channel)
    if show_name:
        console.print(f"[bold]{name}[/bold]")
    if not console.is_terminal:
        for response in responses:
            transcript.add(response)
            for line in _response_lines(response, labels, words):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        return transcript
    partials: dict[tuple[int, int], str] = {}
    with Live(console=console, transient=True, auto_refresh=False) as live:
        for response in responses:
            transcript.add(response)
            for result in response.results:
                if result.is_final:
                    partials.pop(_partial_key(result), None)
                else:
                    text = result.alternatives[0].transcript if result.alternatives else ""
                    partials[_partial_key(result)] = labels.of(result) + text
            for line in _response_lines(response, labels, words):
                live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            lines = "\n".join(partials[key] for key in sorted(partials))
            live.update(Text(lines, style="dim italic"), refresh=True)
    return transcript


def print_subtitle_stream(
    responses: Iterable[asr_pb2.StreamingRecognizeResponse],
    fmt: str,
    out: TextIO = sys.stdout,
    labels: Labels = Labels(),
) -> FileTranscript:
    """SRT or WebVTT cues (``fmt``) from the final results, written as each final arrives."""
    transcript = FileTranscript()
    writer = SubtitleWriter(out, fmt)
    for response in responses:
        transcript.add(response)
        for result in response.results:
            if result.is_final and result.alternatives and result.alternatives[0].transcript:
                for cue in cues_of(result, labels.of(result)):
                    writer.write(cue)
    return transcript


def print_models(models: list[asr_pb2.ModelInfo], as_json: bool, console: Console) -> None:
    if as_json:
        for model in models:
            record = MessageToDict(model, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            console.file.write(json.dumps(record) + "\n")
        return
    table = Table("model", "languages", "rate", "multi-talker", "chunk", "latency", "parameters")
    for model in models:
        table.add_row(
            model.name + (" (default)" if model.is_default else ""),
            ",".join(model.languages),
            f"{model.sample_rate_hertz} Hz",
            "yes" if model.multi_talker else "no",
            f"{model.chunk_ms} ms",
            f"{model.latency_ms} ms",
            f"{model.num_parameters / 1e6:.1f} M",
        )
    print_table(table, console)


def print_table(table: Table, console: Console) -> None:
    """``table`` on a terminal as wide as the terminal; elsewhere (a pipe, a file) at its natural
    width, so that no cell is cut or wrapped to fit the 80 columns rich assumes there."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(1_000_000)).maximum
    # A console renders at most its own width: this one is as wide as the table.
    Console(file=console.file, width=natural, highlight=False).print(table)
