"""How the CLI shows responses: JSON lines, or text with live partials on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TextIO

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asr_client.api.asr.v1 import asr_pb2


class FileTranscript:
    """The final results of one file, accumulated in order."""

    def __init__(self) -> None:
        self.finals: list[tuple[int, str]] = []  # (channel, transcript)
        self.audio_seconds = 0.0

    def add(self, response: asr_pb2.StreamingRecognizeResponse) -> None:
        self.audio_seconds = response.audio_processed.ToTimedelta().total_seconds()
        for result in response.results:
            if result.is_final and result.alternatives and result.alternatives[0].transcript:
                self.finals.append((result.channel, result.alternatives[0].transcript))

    @property
    def text(self) -> str:
        return " ".join(text for _, text in self.finals)

    def channel_texts(self) -> dict[str, str]:
        channels: dict[str, list[str]] = {}
        for channel, text in self.finals:
            channels.setdefault(str(channel), []).append(text)
        return {channel: " ".join(texts) for channel, texts in sorted(channels.items())}


def print_json_stream(
    name: str,
    responses: Iterable[asr_pb2.StreamingRecognizeResponse],
    multi_talker: bool,
    out: TextIO = sys.stdout,
) -> FileTranscript:
    """One JSON object per response, then ``{"file", "text", ...}`` with the whole transcript."""
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
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    out.flush()
    return transcript


def _label(result: asr_pb2.StreamingRecognitionResult, multi_talker: bool) -> str:
    text = result.alternatives[0].transcript if result.alternatives else ""
    return f"[speaker {result.channel + 1}] {text}" if multi_talker else text


def print_text_stream(
    name: str,
    responses: Iterable[asr_pb2.StreamingRecognizeResponse],
    multi_talker: bool,
    console: Console,
    show_name: bool,
) -> FileTranscript:
    """Finals as lines; on a terminal the partials of the utterance in progress update in place."""
    transcript = FileTranscript()
    if show_name:
        console.print(f"[bold]{name}[/bold]")
    if not console.is_terminal:
        for response in responses:
            transcript.add(response)
            for result in response.results:
                if result.is_final:
                    line = _label(result, multi_talker)
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
        return transcript
    partials: dict[int, str] = {}
    with Live(console=console, transient=True, auto_refresh=False) as live:
        for response in responses:
            transcript.add(response)
            for result in response.results:
                if result.is_final:
                    partials.pop(result.channel, None)
                    line = _label(result, multi_talker)
                    live.console.print(line, markup=False, highlight=False, soft_wrap=True)
                else:
                    partials[result.channel] = _label(result, multi_talker)
            lines = "\n".join(partials[channel] for channel in sorted(partials))
            live.update(Text(lines, style="dim italic"), refresh=True)
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
    console.print(table)
