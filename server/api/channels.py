"""The recognition streams of one call: one, or one per input channel.

With ``separate_recognition_per_channel`` each channel of the audio is its own stream: its own
audio decoder (which keeps only that channel), session, slot and response shaping, and its
results carry ``audio_channel``. A call's streams get every audio message in turn, and their
updates are merged into one response stream in the order they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from asr_client.api.asr.v1 import asr_pb2

from server.api.audio import AudioDecoder
from server.api.containers import ContainerDecoder
from server.api.voice_activity import StreamResponses
from server.engine.decoder import Update
from server.engine.session import StreamSession


@dataclass(eq=False)
class ChannelStream:
    """One recognition stream of a call: audio channel ``channel`` (0 when not per channel)."""

    channel: int
    session: StreamSession
    decoder: AudioDecoder | ContainerDecoder
    shaped: StreamResponses

    def finish(self) -> None:
        """End of this stream's audio: flush the audio decoder, finalise the session."""
        self.accept(self.decoder.flush())
        self.shaped.end_of_audio()
        self.session.finish()

    def accept(self, samples: np.ndarray) -> None:
        """Decoded samples at the model's rate into the session (and the voice activity detector)."""
        self.session.accept_audio(samples)
        self.shaped.hear(samples)

    def release(self) -> None:
        """Free the slot now and the decoder's buffers (whatever ended the call)."""
        self.session.close()
        self.decoder.close()

    def responses(self, update: Update) -> list[asr_pb2.StreamingRecognizeResponse]:
        """This stream's responses for ``update``, its results marked with its channel."""
        shaped = self.shaped.of(update)
        if self.channel:
            for response in shaped:
                for result in response.results:
                    result.audio_channel = self.channel
        return shaped


async def merged_updates(streams: list[ChannelStream]) -> AsyncIterator[tuple[ChannelStream, Update]]:
    """Every stream's updates as they come, until all have ended; re-raises a stream's error."""
    if len(streams) == 1:  # the common case, without the queue
        async for update in streams[0].session.updates():
            yield streams[0], update
        return
    queue: asyncio.Queue[tuple[ChannelStream, Update | BaseException | None]] = asyncio.Queue()

    async def drain(stream: ChannelStream) -> None:
        try:
            async for update in stream.session.updates():
                await queue.put((stream, update))
            await queue.put((stream, None))
        except Exception as error:  # a failed stream fails the call
            await queue.put((stream, error))

    tasks = [asyncio.create_task(drain(stream)) for stream in streams]
    try:
        open_streams = len(streams)
        while open_streams:
            stream, item = await queue.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield stream, item
    finally:
        for task in tasks:
            task.cancel()
