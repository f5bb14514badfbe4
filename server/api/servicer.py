"""The ``asr.v1.Recognizer`` gRPC servicer (grpc.aio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc

from server import metrics
from server.api.admission import Admission
from server.api.audio import BYTES_PER_SAMPLE, AudioDecoder, AudioFormatError
from server.api.channels import ChannelStream, merged_updates
from server.api.containers import CONTAINER_FORMATS, ContainerDecoder, container_seconds
from server.api.convert import duration_ms, model_info
from server.api.errors import RequestError, bounded, count_error, invalid_argument
from server.api.validation import StreamingOptions, ValidatedConfig, streaming_options, validate_config
from server.api.voice_activity import StreamResponses
from server.engine.errors import EngineError
from server.engine.registry import ModelRegistry
from server.engine.session import StreamSession
from server.engine.slots import SlotExhaustedError

log = logging.getLogger(__name__)

# Recognize (unary) limits, documented in asr.proto.
MAX_RECOGNIZE_SECONDS = 60.0
MAX_RECOGNIZE_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(eq=False)  # hashed by identity: the servicer keeps the open ones in a set
class _RequestResources:
    """What a call opened and must release, filled in as the call proceeds."""

    streams: list[ChannelStream] = field(default_factory=list)  # one, or one per audio channel
    reader: asyncio.Task[None] | None = None
    # The `model` label of the call's error metrics, once the request named a model.
    model: str = metrics.NO_MODEL

    def finish(self) -> None:
        """End the call's audio here, as if the client had half-closed: stop reading, flush what
        the audio decoders hold, and let the sessions finalise (finals on drain)."""
        if self.reader is not None:
            self.reader.cancel()  # suspended at an await: it touches nothing after this
        for stream in self.streams:
            stream.finish()

    def release(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        for stream in self.streams:
            # Frees the stream's slot at once, also when the client went away.
            stream.release()


class RecognizerServicer(asr_pb2_grpc.RecognizerServicer):
    """StreamingRecognize, Recognize and ListModels over the engines of a model registry."""

    def __init__(self, registry: ModelRegistry, admission: Admission, idle_timeout_s: float = 0.0) -> None:
        self.registry = registry
        self.admission = admission
        self.idle_timeout_s = idle_timeout_s  # 0: a stream may wait for its client's next message forever
        self._open_calls: set[_RequestResources] = set()

    # -- StreamingRecognize ----------------------------------------------------------------
    async def StreamingRecognize(  # noqa: N802 (gRPC method name)
        self,
        request_iterator: AsyncIterator[asr_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[asr_pb2.StreamingRecognizeResponse]:
        async with self._request(context, "StreamingRecognize") as resources:
            first = await _next_request(request_iterator, self.idle_timeout_s)
            if first is None or first.WhichOneof("streaming_request") != "streaming_config":
                raise invalid_argument(
                    f"the first request of a stream must carry streaming_config (got {_first_request_kind(first)})"
                )
            streaming_config = first.streaming_config
            resources.model = _model_label(self.registry, streaming_config.config.model)
            options = streaming_options(streaming_config)
            validated = validate_config(streaming_config.config, self.registry, options.interim_results)
            streams = self._open_streams(validated, options, resources)
            for stream in streams:
                stream.session.step_listener = stream.shaped.timeout_listener(stream.finish)
            resources.reader = asyncio.create_task(_pump_audio(request_iterator, streams, self.idle_timeout_s))
            async for stream, update in merged_updates(streams):
                for response in stream.responses(update):
                    yield response
                if stream.shaped.done:
                    return  # single utterance: the call ends OK; the reader and sessions are released
            for stream in streams:
                for response in stream.shaped.closing():
                    yield response

    # -- Recognize ---------------------------------------------------------------------------
    async def Recognize(  # noqa: N802 (gRPC method name)
        self, request: asr_pb2.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> asr_pb2.RecognizeResponse:
        async with self._request(context, "Recognize") as resources:
            resources.model = _model_label(self.registry, request.config.model)
            validated = validate_config(request.config, self.registry, interim_results=False)
            _check_recognize_audio(request.audio_content, validated)
            streams = self._open_streams(validated, StreamingOptions(), resources)
            for stream in streams:
                await _feed(request.audio_content, stream)
                stream.finish()
            response = asr_pb2.RecognizeResponse()
            async for stream, update in merged_updates(streams):
                for part in stream.responses(update):
                    response.results.extend(part.results)
                response.audio_processed.CopyFrom(duration_ms(update.audio_processed_ms))
            return response
        raise AssertionError("unreachable: a failed request aborts the call")

    @contextlib.asynccontextmanager
    async def _request(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[_RequestResources]:
        """One call's lifecycle: admission, error -> status mapping, and release of its stream.

        Whatever ends the call (result, bad input, cancellation, disconnect, a bug), the
        stream's slot and the admission count come back at once.
        """
        resources = _RequestResources()
        admitted = False
        try:
            self.admission.enter()
            admitted = True
            self._open_calls.add(resources)
            yield resources
        except RequestError as error:
            await _abort(context, resources.model, method, error)
        except AudioFormatError as error:  # Recognize's audio (a stream's goes through the session)
            await _abort(context, resources.model, method, invalid_argument(str(error)))
        except EngineError as error:  # logged where it happened (the scheduler)
            await _abort(context, resources.model, method, RequestError(grpc.StatusCode.INTERNAL, str(error)))
        except asyncio.CancelledError:
            _count_cancellation(context, resources.model, method)
            raise
        except Exception as error:
            log.exception("%s failed", method)
            await _abort(
                context, resources.model, method, RequestError(grpc.StatusCode.INTERNAL, f"internal error: {error}")
            )
        finally:
            self._open_calls.discard(resources)
            resources.release()
            if admitted:
                self.admission.leave()

    def finish_open_streams(self) -> int:
        """Finals on drain: end every open stream's audio now (``_RequestResources.finish``); each
        sends its last final and ends OK. Returns how many streams were open."""
        for resources in list(self._open_calls):
            resources.finish()
        return len(self._open_calls)

    # -- ListModels --------------------------------------------------------------------------
    async def ListModels(  # noqa: N802 (gRPC method name)
        self, request: asr_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> asr_pb2.ListModelsResponse:
        return asr_pb2.ListModelsResponse(
            models=[
                model_info(engine.model, is_default=name == self.registry.default)
                for name, engine in sorted(self.registry.engines.items())
            ]
        )

    # -- helpers -----------------------------------------------------------------------------
    def _open_streams(
        self, validated: ValidatedConfig, options: StreamingOptions, resources: _RequestResources
    ) -> list[ChannelStream]:
        """The call's recognition streams (one per audio channel with per-channel recognition),
        each added to ``resources`` as it opens, so that a failure releases those already open."""
        audio = validated.audio
        for channel in range(audio.channels) if audio.per_channel else [None]:
            session = self._open_session(validated)
            decoder = _decoder(validated, channel)
            resources.streams.append(ChannelStream(channel or 0, session, decoder, StreamResponses(options)))
        return resources.streams

    def _open_session(self, validated: ValidatedConfig) -> StreamSession:
        try:
            return validated.engine.open_session(validated.options)
        except SlotExhaustedError as error:
            # Only reachable if the engine's slot pool is smaller than the stream limit.
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)) from error


def _first_request_kind(first: asr_pb2.StreamingRecognizeRequest | None) -> str:
    """What a wrong first request held, in an error message's words."""
    if first is None:
        return "no request"
    return "audio_content" if first.WhichOneof("streaming_request") == "audio_content" else "an empty request"


def _check_recognize_audio(data: bytes, validated: ValidatedConfig) -> None:
    """Recognize's limits: at most ``MAX_RECOGNIZE_SECONDS``, whole samples."""
    audio = validated.audio
    if audio.encoding in CONTAINER_FORMATS:
        seconds = container_seconds(data, audio.encoding)
        sample_bytes = 1
    else:
        sample_bytes = BYTES_PER_SAMPLE[audio.encoding]
        seconds = len(data) / (sample_bytes * audio.channels * audio.sample_rate)
    if seconds > MAX_RECOGNIZE_SECONDS:
        raise invalid_argument(
            f"Recognize accepts at most {MAX_RECOGNIZE_SECONDS:g} s of audio; got {seconds:.1f} s "
            "(use StreamingRecognize for longer audio)"
        )
    if len(data) % sample_bytes:
        raise invalid_argument(
            f"LINEAR16 audio_content must hold whole 16-bit samples; got {len(data)} bytes (odd length)"
        )


async def _feed(data: bytes, stream: ChannelStream) -> None:
    """One message's audio into the session a piece at a time (``decoder.piece_bytes``: 0.5 s of raw
    audio), with the event loop free in between, waiting for the model between pieces while the
    stream's backlog is full (``StreamSession.wait_for_capacity``): one 16 MiB message (35 min of
    8-kHz MULAW) neither stalls other streams nor becomes 35 minutes of features in memory at once."""
    decoder = stream.decoder
    decoder.check_length(len(data))
    piece = decoder.piece_bytes
    view = memoryview(data)
    for start in range(0, len(data), piece):
        stream.accept(decoder.accept(bytes(view[start : start + piece])))
        await stream.session.wait_for_capacity()
        if start + piece < len(data):
            await asyncio.sleep(0)  # let other streams' responses out between pieces


async def _next_request(
    requests: AsyncIterator[asr_pb2.StreamingRecognizeRequest], idle_timeout_s: float
) -> asr_pb2.StreamingRecognizeRequest | None:
    """The client's next message (None once it half-closed), within ``idle_timeout_s`` if set."""
    if not idle_timeout_s:
        return await anext(requests, None)
    try:
        return await asyncio.wait_for(anext(requests, None), idle_timeout_s)
    except asyncio.TimeoutError:
        # OUT_OF_RANGE, as Google Speech-to-Text answers a stream whose audio stopped coming.
        raise RequestError(
            grpc.StatusCode.OUT_OF_RANGE,
            f"no message from the client for {idle_timeout_s:g} s: send audio as it is captured "
            "(silence too) and half-close the stream when the audio ends",
        ) from None


def _decoder(validated: ValidatedConfig, channel: int | None = None) -> AudioDecoder | ContainerDecoder:
    """The audio decoder of the stream of ``channel`` (None: the configured selection or downmix)."""
    audio, target_rate = validated.audio, validated.engine.model.config.sample_rate
    selected = audio.selected_channel if channel is None else channel
    if audio.encoding in CONTAINER_FORMATS:
        return ContainerDecoder(audio.encoding, audio.sample_rate, selected, target_rate)
    return AudioDecoder(audio.encoding, audio.sample_rate, audio.channels, selected, target_rate)


async def _pump_audio(
    requests: AsyncIterator[asr_pb2.StreamingRecognizeRequest], streams: list[ChannelStream], idle_timeout_s: float
) -> None:
    """Read the client's audio into the call's streams until the client half-closes.

    Backpressure: while the model is far behind a stream, no more is read, and gRPC flow
    control slows the client.
    """
    try:
        while (request := await _next_request(requests, idle_timeout_s)) is not None:
            kind = request.WhichOneof("streaming_request")
            if kind == "streaming_config":
                raise invalid_argument("streaming_config may only be sent in the first request of a stream")
            if kind is not None:
                for stream in streams:
                    await _feed(request.audio_content, stream)
        for stream in streams:
            stream.finish()
    except AudioFormatError as error:
        _fail(streams, invalid_argument(str(error)))
    except RequestError as error:
        _fail(streams, error)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # e.g. the client's stream broke
        _fail(streams, RequestError(grpc.StatusCode.CANCELLED, f"reading the request stream failed: {error}"))


def _fail(streams: list[ChannelStream], error: RequestError) -> None:
    for stream in streams:
        stream.session.fail(error)


async def _abort(context: grpc.aio.ServicerContext, model: str, method: str, error: RequestError) -> None:
    count_error(error.code, model=model, method=method)
    message = bounded(error.message)
    if error.code == grpc.StatusCode.INTERNAL:
        log.error("request failed: %s", message)
    else:
        log.info("request rejected: %s: %s", error.code.name, message)
    await context.abort(error.code, message)


def _count_cancellation(context: grpc.aio.ServicerContext, model: str, method: str) -> None:
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0
    count_error(grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED, model=model, method=method)


def _model_label(registry: ModelRegistry, requested: str) -> str:
    """The ``model`` label of a request for model ``requested`` ("": the default): the served
    model's name, or ``metrics.UNKNOWN_MODEL`` for a name this server lacks (a client's free text
    must not become a label value: each distinct one would make a new series)."""
    engine = registry.get(requested)
    return engine.name if engine is not None else metrics.UNKNOWN_MODEL
