"""Python clients of the ``asr.v1.Recognizer`` service: blocking and asyncio.

    from asr_client import AsrClient, recognition_config

    with AsrClient("localhost:50051") as client:
        for response in client.stream_file("call.wav"):
            for result in response.results:
                print(result.is_final, result.alternatives[0].transcript)

N-best, phrase boosting, one utterance, voice activity events (``recognition_config`` and
``streaming_config`` build the same requests for ``streaming_recognize``):

        for response in client.stream_file(
            "call.wav", max_alternatives=3, phrases=["tanaka"], boost=8,
            single_utterance=True, enable_voice_activity_events=True,
        ):
            if response.speech_event_type:  # asr_pb2.SPEECH_ACTIVITY_BEGIN, ...
                print(asr_pb2.SpeechEventType.Name(response.speech_event_type))

Errors arrive as ``grpc.RpcError`` (``grpc.aio.AioRpcError`` for the asyncio client) with
the status code and message the server sent.

A server with TLS and bearer tokens:

    AsrClient("asr.example.com:443", ca_file="ca.pem", token=os.environ["ASR_TOKEN"])
    AsrClient(target, ca_file="ca.pem", cert_file="client.pem", key_file="client.key")  # mutual TLS
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration

from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_client.audio import BYTES_PER_SAMPLE, apaced, chunk_size_bytes, paced, read_audio_file, split_chunks
from asr_client.security import BearerToken, async_bearer_token, channel_credentials

DEFAULT_SERVER = "localhost:50051"
# Matches the server's Recognize limit (16 MiB of audio plus the configuration).
_MAX_MESSAGE_BYTES = 17 * 1024 * 1024
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]


def recognition_config(
    sample_rate_hertz: int,
    *,
    encoding: asr_pb2.AudioEncoding | str = asr_pb2.LINEAR16,
    audio_channel_count: int = 1,
    selected_channel: int | None = None,
    model: str = "",
    language_codes: Sequence[str] = (),
    multi_talker: bool = False,
    enable_word_time_offsets: bool = False,
    trailing_silence_ms: int = 0,
    max_utterance_ms: int = 0,
    separate_recognition_per_channel: bool = False,
    max_alternatives: int = 0,
    enable_word_confidence: bool = False,
    speech_contexts: Sequence[asr_pb2.SpeechContext] = (),
    phrases: Sequence[str] = (),
    boost: float = 0.0,
) -> asr_pb2.RecognitionConfig:
    """A ``RecognitionConfig`` from keyword arguments (0 and empty values: server defaults).

    ``max_alternatives``: distinct transcripts (best first) in each final result, 1 to 10; 0
    means 1. ``enable_word_confidence``: fill each word's ``confidence`` (the words come with
    ``enable_word_time_offsets``). Phrase boosting: ``speech_contexts`` are sent as they are;
    ``phrases`` is a shorthand that adds one more ``SpeechContext(phrases=phrases, boost=boost)``
    (``boost`` 0 to 20, 0: the server default of 5; ``boost`` without ``phrases`` is refused).
    The server checks the ranges and answers INVALID_ARGUMENT with what it accepts.

        recognition_config(16000, max_alternatives=3, phrases=["tanaka", "gdansk"], boost=8)
    """
    if boost and not phrases:
        raise ValueError(f"boost applies to phrases; got boost={boost:g} and no phrases")
    contexts = list(speech_contexts)
    if phrases:
        contexts.append(asr_pb2.SpeechContext(phrases=list(phrases), boost=boost))
    config = asr_pb2.RecognitionConfig(
        model=model,
        encoding=encoding,
        sample_rate_hertz=sample_rate_hertz,
        audio_channel_count=audio_channel_count,
        enable_word_time_offsets=enable_word_time_offsets,
        endpointing=asr_pb2.EndpointingConfig(
            trailing_silence_ms=trailing_silence_ms, max_utterance_ms=max_utterance_ms
        ),
        language_codes=list(language_codes),
        multi_talker=multi_talker,
        separate_recognition_per_channel=separate_recognition_per_channel,
        max_alternatives=max_alternatives,
        enable_word_confidence=enable_word_confidence,
        speech_contexts=contexts,
    )
    if selected_channel is not None:
        config.selected_channel = selected_channel
    return config


def _duration(seconds: float, name: str) -> Duration:
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds; got {seconds!r}")
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def streaming_config(
    config: asr_pb2.RecognitionConfig,
    interim_results: bool = True,
    *,
    single_utterance: bool = False,
    enable_voice_activity_events: bool = False,
    speech_start_timeout_s: float | None = None,
    speech_end_timeout_s: float | None = None,
) -> asr_pb2.StreamingRecognitionConfig:
    """A ``StreamingRecognitionConfig``: ``config`` and the options of a stream.

    ``interim_results``: send partial results while an utterance is in progress.
    ``single_utterance``: the server ends the stream after the first final, with a response
    whose ``speech_event_type`` is ``END_OF_SINGLE_UTTERANCE``.
    ``enable_voice_activity_events``: responses with ``SPEECH_ACTIVITY_BEGIN`` / ``_END`` (and
    ``speech_event_time``) where speech starts and stops.
    ``speech_start_timeout_s`` / ``speech_end_timeout_s`` (``voice_activity_timeout``, seconds,
    None: no limit): with no speech this long from the start of the stream / after speech ended,
    the server sends ``SPEECH_ACTIVITY_TIMEOUT`` and ends the stream (1 ms to 3600 s).
    """
    streaming = asr_pb2.StreamingRecognitionConfig(
        config=config,
        interim_results=interim_results,
        single_utterance=single_utterance,
        enable_voice_activity_events=enable_voice_activity_events,
    )
    if speech_start_timeout_s is not None:
        streaming.voice_activity_timeout.speech_start_timeout.CopyFrom(
            _duration(speech_start_timeout_s, "speech_start_timeout_s")
        )
    if speech_end_timeout_s is not None:
        streaming.voice_activity_timeout.speech_end_timeout.CopyFrom(
            _duration(speech_end_timeout_s, "speech_end_timeout_s")
        )
    return streaming


def _as_streaming(
    config: asr_pb2.RecognitionConfig | asr_pb2.StreamingRecognitionConfig, interim_results: bool
) -> asr_pb2.StreamingRecognitionConfig:
    if isinstance(config, asr_pb2.StreamingRecognitionConfig):
        return config
    return streaming_config(config, interim_results)


def _requests(
    config: asr_pb2.StreamingRecognitionConfig, audio: Iterable[bytes]
) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config)
    for chunk in audio:
        if chunk:
            yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)


async def _arequests(
    config: asr_pb2.StreamingRecognitionConfig, audio: AsyncIterable[bytes] | Iterable[bytes]
) -> AsyncIterator[asr_pb2.StreamingRecognizeRequest]:
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config)
    if isinstance(audio, AsyncIterable):
        async for chunk in audio:
            if chunk:
                yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)
    else:
        for chunk in audio:
            if chunk:
                yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)


def _file_stream(
    path: str | Path, chunk_ms: float, interim_results: bool, streaming: dict[str, Any], options: dict[str, Any]
) -> tuple[Iterator[bytes], int, asr_pb2.StreamingRecognitionConfig]:
    """A file's LINEAR16 chunks, its byte rate (for pacing) and the config that describes it
    (``streaming``: ``streaming_config`` keywords; ``options``: ``recognition_config`` ones)."""
    audio = read_audio_file(path)
    chunk = chunk_size_bytes(audio.sample_rate, audio.channels, chunk_ms)
    config = recognition_config(audio.sample_rate, audio_channel_count=audio.channels, **options)
    bytes_per_second = audio.sample_rate * audio.channels * BYTES_PER_SAMPLE
    return split_chunks(audio.data, chunk), bytes_per_second, streaming_config(config, interim_results, **streaming)


@dataclass(frozen=True)
class Connection:
    """How a client reaches its server: plaintext, TLS or mutual TLS, with or without a token.

    ``tls``: verify the server against the system roots, or ``ca_file`` (PEM; implies TLS).
    ``cert_file`` / ``key_file``: the client's certificate and key for mutual TLS (both or
    neither; imply TLS). ``token``: sent as ``authorization: Bearer <token>`` on every call.
    """

    tls: bool = False
    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    token: str | None = None

    @property
    def secure(self) -> bool:
        return self.tls or any(path is not None for path in (self.ca_file, self.cert_file, self.key_file))

    @property
    def configured(self) -> bool:
        """Does this ask for anything beyond a plaintext channel?"""
        return self.secure or self.token is not None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (reads the PEM files), or None for plaintext."""
        return channel_credentials(self.ca_file, self.cert_file, self.key_file) if self.secure else None


def _refuse_with_channel(connection: Connection, channel: object) -> None:
    if channel is not None and connection.configured:
        raise ValueError(
            "a ready channel carries its own credentials: pass tls/ca_file/cert_file/key_file/token "
            "only when the client builds its channel from target"
        )


class AsrClient:
    """Blocking client. ``target`` is ``host:port``; or pass a ready ``channel``.

    TLS and tokens: see ``Connection`` for ``tls``, ``ca_file``, ``cert_file``, ``key_file``
    and ``token``; by default the channel is plaintext and sends no token.
    """

    def __init__(
        self,
        target: str = DEFAULT_SERVER,
        *,
        channel: grpc.Channel | None = None,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        connection = Connection(tls, ca_file, cert_file, key_file, token)
        _refuse_with_channel(connection, channel)
        self._own_channel = channel is None
        self.channel = channel or _channel(target, connection)
        self.stub = asr_pb2_grpc.RecognizerStub(self.channel)

    def __enter__(self) -> AsrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def streaming_recognize(
        self,
        audio: Iterable[bytes],
        config: asr_pb2.RecognitionConfig | asr_pb2.StreamingRecognitionConfig,
        *,
        interim_results: bool = True,
        timeout: float | None = None,
    ) -> Iterator[asr_pb2.StreamingRecognizeResponse]:
        """Stream ``audio`` chunks (any size) described by ``config``; yield the responses.

        ``interim_results`` applies when ``config`` is a plain ``RecognitionConfig``; for
        single-utterance streams, voice activity events and timeouts pass a
        ``streaming_config(...)``. Breaking out of the loop cancels the call (the server frees the stream at once).
        """
        requests = _requests(_as_streaming(config, interim_results), audio)
        call = self.stub.StreamingRecognize(requests, timeout=timeout)
        try:
            yield from call
        finally:
            call.cancel()

    def stream_file(
        self,
        path: str | Path,
        *,
        chunk_ms: float = 100.0,
        speed: float | None = None,
        interim_results: bool = True,
        single_utterance: bool = False,
        enable_voice_activity_events: bool = False,
        speech_start_timeout_s: float | None = None,
        speech_end_timeout_s: float | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Iterator[asr_pb2.StreamingRecognizeResponse]:
        """Stream a file (any format soundfile reads) as LINEAR16 at its own rate.

        ``speed`` paces the audio (1.0 = real time; None = as fast as possible).
        ``interim_results``, ``single_utterance``, ``enable_voice_activity_events`` and the
        ``speech_*_timeout_s`` are ``streaming_config``'s; ``options`` are further
        ``recognition_config`` keyword arguments (model, language_codes, multi_talker,
        enable_word_time_offsets, max_alternatives, enable_word_confidence, phrases, boost,
        speech_contexts, ...):

            client.stream_file("call.wav", max_alternatives=3, phrases=["tanaka"], single_utterance=True)
        """
        streaming = {
            "single_utterance": single_utterance,
            "enable_voice_activity_events": enable_voice_activity_events,
            "speech_start_timeout_s": speech_start_timeout_s,
            "speech_end_timeout_s": speech_end_timeout_s,
        }
        chunks, bytes_per_second, config = _file_stream(path, chunk_ms, interim_results, streaming, options)
        chunks = paced(chunks, bytes_per_second, speed)
        yield from self.streaming_recognize(chunks, config, timeout=timeout)

    def recognize(
        self, audio: bytes, config: asr_pb2.RecognitionConfig, *, timeout: float | None = None
    ) -> asr_pb2.RecognizeResponse:
        """Recognise a whole short recording (at most 60 s) in one call."""
        request = asr_pb2.RecognizeRequest(config=config, audio_content=audio)
        return self.stub.Recognize(request, timeout=timeout)

    def list_models(self, *, timeout: float | None = None) -> list[asr_pb2.ModelInfo]:
        return list(self.stub.ListModels(asr_pb2.ListModelsRequest(), timeout=timeout).models)


def _channel(target: str, connection: Connection) -> grpc.Channel:
    """A blocking channel to ``target`` as ``connection`` says."""
    credentials = connection.credentials()
    if credentials is None:
        channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    else:
        channel = grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
    if connection.token is None:
        return channel
    return grpc.intercept_channel(channel, BearerToken(connection.token))


def _async_channel(target: str, connection: Connection) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` as ``connection`` says."""
    interceptors = None if connection.token is None else async_bearer_token(connection.token)
    credentials = connection.credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=_CHANNEL_OPTIONS, interceptors=interceptors)


class AsyncAsrClient:
    """asyncio client (grpc.aio); create it inside the running event loop.

    The connection options are ``AsrClient``'s (see ``Connection``).
    """

    def __init__(
        self,
        target: str = DEFAULT_SERVER,
        *,
        channel: grpc.aio.Channel | None = None,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        connection = Connection(tls, ca_file, cert_file, key_file, token)
        _refuse_with_channel(connection, channel)
        self._own_channel = channel is None
        self.channel = channel or _async_channel(target, connection)
        self.stub = asr_pb2_grpc.RecognizerStub(self.channel)

    async def __aenter__(self) -> AsyncAsrClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    async def streaming_recognize(
        self,
        audio: AsyncIterable[bytes] | Iterable[bytes],
        config: asr_pb2.RecognitionConfig | asr_pb2.StreamingRecognitionConfig,
        *,
        interim_results: bool = True,
        timeout: float | None = None,
    ) -> AsyncIterator[asr_pb2.StreamingRecognizeResponse]:
        """Stream audio chunks from an async (or plain) iterable; yield the responses (as
        ``AsrClient.streaming_recognize``).

        Known grpc-aio limitation (grpcio 1.85): when the server ends a stream with an error while
        this client is still sending audio (a refused configuration, say), the failed send can
        replace the server's status with INTERNAL "Internal error from Core". The blocking
        ``AsrClient`` always reports the server's status.
        """
        call = self.stub.StreamingRecognize(_arequests(_as_streaming(config, interim_results), audio), timeout=timeout)
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()

    async def stream_file(
        self,
        path: str | Path,
        *,
        chunk_ms: float = 100.0,
        speed: float | None = None,
        interim_results: bool = True,
        single_utterance: bool = False,
        enable_voice_activity_events: bool = False,
        speech_start_timeout_s: float | None = None,
        speech_end_timeout_s: float | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> AsyncIterator[asr_pb2.StreamingRecognizeResponse]:
        """Async ``AsrClient.stream_file`` (the same arguments)."""
        streaming = {
            "single_utterance": single_utterance,
            "enable_voice_activity_events": enable_voice_activity_events,
            "speech_start_timeout_s": speech_start_timeout_s,
            "speech_end_timeout_s": speech_end_timeout_s,
        }
        chunks, bytes_per_second, config = _file_stream(path, chunk_ms, interim_results, streaming, options)
        async for response in self.streaming_recognize(
            apaced(chunks, bytes_per_second, speed), config, timeout=timeout
        ):
            yield response

    async def recognize(
        self, audio: bytes, config: asr_pb2.RecognitionConfig, *, timeout: float | None = None
    ) -> asr_pb2.RecognizeResponse:
        request = asr_pb2.RecognizeRequest(config=config, audio_content=audio)
        return await self.stub.Recognize(request, timeout=timeout)

    async def list_models(self, *, timeout: float | None = None) -> list[asr_pb2.ModelInfo]:
        response = await self.stub.ListModels(asr_pb2.ListModelsRequest(), timeout=timeout)
        return list(response.models)
