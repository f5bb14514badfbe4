"""Validation of a ``RecognitionConfig`` against the served models.

Every rejection is an INVALID_ARGUMENT ``RequestError`` whose message says what is
accepted, so a client developer can fix the request from the message alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from asr_client.api.asr.v1 import asr_pb2

from server.api.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from server.api.containers import CONTAINER_FORMATS
from server.api.errors import invalid_argument, shown
from server.api.search_options import context_graph, max_alternatives
from server.engine.decoder import StreamOptions
from server.engine.endpoint import DEFAULT_MAX_UTTERANCE_MS, DEFAULT_TRAILING_SILENCE_MS, EndpointConfig
from server.engine.engine import Engine
from server.engine.registry import ModelRegistry

MAX_CHANNELS = 8
# Unknown language codes named in an error (the rest are counted): the message stays small.
MAX_LISTED_CODES = 5
SUPPORTED_ENCODINGS = (asr_pb2.LINEAR16, asr_pb2.MULAW, asr_pb2.ALAW, asr_pb2.FLAC, asr_pb2.OGG_OPUS)
ENCODING_NAMES = ("LINEAR16", "MULAW", "ALAW", "FLAC", "OGG_OPUS")


@dataclass(frozen=True)
class AudioFormat:
    encoding: int
    sample_rate: int
    channels: int
    selected_channel: int | None
    per_channel: bool = False  # each channel recognised as its own stream


@dataclass(frozen=True)
class ValidatedConfig:
    engine: Engine
    audio: AudioFormat
    options: StreamOptions


def validate_config(
    config: asr_pb2.RecognitionConfig, registry: ModelRegistry, interim_results: bool
) -> ValidatedConfig:
    """Check ``config``; returns the engine, audio format and session options."""
    engine = registry.get(config.model)
    if engine is None:
        raise invalid_argument(
            f"unknown model {shown(config.model)}; this server serves: {', '.join(sorted(registry.engines))}"
        )
    _reject_unimplemented(config)
    audio = _audio_format(config)
    model_config = engine.model.config
    languages = _languages(list(config.language_codes), list(model_config.languages), engine.name)
    if config.multi_talker and not model_config.multi_talker:
        multi = [name for name, e in sorted(registry.engines.items()) if e.model.config.multi_talker]
        raise invalid_argument(
            f"model {engine.name!r} does not support multi_talker; models that do: "
            f"{', '.join(multi) if multi else 'none on this server'}"
        )
    endpointing = config.endpointing
    endpoint = EndpointConfig(
        trailing_silence_ms=endpointing.trailing_silence_ms or DEFAULT_TRAILING_SILENCE_MS,
        max_utterance_ms=endpointing.max_utterance_ms or DEFAULT_MAX_UTTERANCE_MS,
    )
    weights = None
    if len(languages) < len(model_config.languages):
        weights = np.array([lang in languages for lang in model_config.languages], np.float32)
    language_code = languages[0] if len(languages) == 1 else ""
    options = StreamOptions(
        interim_results=interim_results,
        word_times=config.enable_word_time_offsets,
        endpoint=endpoint,
        language_weights=weights,
        language_code=language_code,
        multi_talker=config.multi_talker,
        max_alternatives=max_alternatives(config),
        word_confidence=config.enable_word_confidence,
        context_graph=context_graph(config, engine.model.tokenizer, engine.name),
    )
    return ValidatedConfig(engine, audio, options)


def _audio_format(config: asr_pb2.RecognitionConfig) -> AudioFormat:
    encoding = config.encoding or asr_pb2.LINEAR16
    if encoding not in SUPPORTED_ENCODINGS:
        raise invalid_argument(f"unsupported encoding {config.encoding}; supported: {', '.join(ENCODING_NAMES)}")
    container = encoding in CONTAINER_FORMATS  # the stream's header gives its rate and channels
    rate = config.sample_rate_hertz
    if not (container and rate == 0) and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        header = " (or 0: the header's)" if container else ""
        raise invalid_argument(
            f"sample_rate_hertz must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}{header}; got {rate}"
        )
    channels = config.audio_channel_count or 1
    if not 1 <= channels <= MAX_CHANNELS:
        raise invalid_argument(f"audio_channel_count must be between 1 and {MAX_CHANNELS}; got {channels}")
    selected = config.selected_channel if config.HasField("selected_channel") else None
    if selected is not None and selected >= channels and not container:
        raise invalid_argument(
            f"selected_channel {selected} does not exist in audio with {channels} channel(s) "
            f"(valid: 0 to {channels - 1})"
        )
    if config.separate_recognition_per_channel and selected is not None:
        raise invalid_argument(
            "separate_recognition_per_channel recognises every channel: leave selected_channel unset"
        )
    return AudioFormat(encoding, rate, channels, selected, config.separate_recognition_per_channel and channels > 1)


def _languages(requested: list[str], supported: list[str], model_name: str) -> list[str]:
    """The model's language codes for the requested BCP-47 codes (empty: all languages).

    A code matches a model language exactly or by its primary subtag ("en-US" -> "en"),
    case-insensitively.
    """
    if not requested:
        return supported
    by_lower = {lang.lower(): lang for lang in supported}
    chosen: list[str] = []
    unknown: list[str] = []
    for code in requested:
        key = code.strip().lower().replace("_", "-")
        match = by_lower.get(key) or by_lower.get(key.split("-")[0])
        if match is None:
            unknown.append(code)
        elif match not in chosen:
            chosen.append(match)
    if unknown:
        listed = ", ".join(shown(code) for code in unknown[:MAX_LISTED_CODES])
        if len(unknown) > MAX_LISTED_CODES:
            listed += f" and {len(unknown) - MAX_LISTED_CODES} more"
        raise invalid_argument(
            f"model {model_name!r} does not support language(s) {listed}; it supports: {', '.join(supported)}"
        )
    return chosen


def _reject_unimplemented(config: asr_pb2.RecognitionConfig) -> None:
    """Options of asr.v1 this server does not implement yet: refused, never silently ignored."""
    unimplemented: dict[str, bool] = {}  # every option of asr.v1 is implemented now
    _refuse([name for name, asked in unimplemented.items() if asked])


@dataclass(frozen=True)
class StreamingOptions:
    """What ``StreamingRecognitionConfig`` adds to a ``RecognitionConfig``."""

    interim_results: bool = False
    single_utterance: bool = False
    voice_activity_events: bool = False
    speech_start_timeout_ms: int | None = None
    speech_end_timeout_ms: int | None = None

    @property
    def tracks_voice(self) -> bool:
        """Events or timeouts asked for: the stream's speech edges are followed."""
        timeouts = (self.speech_start_timeout_ms, self.speech_end_timeout_ms)
        return self.voice_activity_events or any(timeout is not None for timeout in timeouts)


MAX_VOICE_TIMEOUT_MS = 3_600_000


def streaming_options(streaming_config: asr_pb2.StreamingRecognitionConfig) -> StreamingOptions:
    """The streaming-only options, checked."""
    timeouts = streaming_config.voice_activity_timeout
    return StreamingOptions(
        interim_results=streaming_config.interim_results,
        single_utterance=streaming_config.single_utterance,
        voice_activity_events=streaming_config.enable_voice_activity_events,
        speech_start_timeout_ms=_timeout_ms(timeouts, "speech_start_timeout"),
        speech_end_timeout_ms=_timeout_ms(timeouts, "speech_end_timeout"),
    )


def _timeout_ms(timeouts: asr_pb2.VoiceActivityTimeout, name: str) -> int | None:
    if not timeouts.HasField(name):  # type: ignore[arg-type]  # the two Duration fields
        return None
    duration = getattr(timeouts, name)
    ms = duration.seconds * 1000 + duration.nanos // 1_000_000
    if not 0 < ms <= MAX_VOICE_TIMEOUT_MS:
        raise invalid_argument(
            f"voice_activity_timeout.{name} must be between 1 ms and {MAX_VOICE_TIMEOUT_MS // 1000} s; got {ms} ms"
        )
    return ms


def _refuse(names: list[str]) -> None:
    if names:
        raise invalid_argument(f"not supported by this server yet: {', '.join(names)}")
