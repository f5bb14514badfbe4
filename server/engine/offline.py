"""Streams decoded without the server: the engine's own decoder and batch stepper, driven by a plain loop.

Evaluation (``asr-train eval``), the speed benchmarks and the tests decode through this, so
they measure the chunk-by-chunk path users get: the same ``StreamDecoder`` and
``BatchStepper`` the server runs, minus asyncio. Each round feeds every stream that has
joined its next piece of audio, then steps one window of each stream that has one, in one
batch, as the server's scheduler does under load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from server.engine.batch import BatchOutput, BatchStepper, Window
from server.engine.decoder import StreamDecoder, StreamOptions, Update
from server.model.transducer import StreamingTransducer
from server.search.options import Search


def decode_streams(
    model: StreamingTransducer,
    search: Search,
    audio: Sequence[Iterable[np.ndarray]],
    options: StreamOptions | Sequence[StreamOptions] | None = None,
    join_at: Sequence[int] | None = None,
    steps: list[BatchOutput] | None = None,
    features: bool = False,
) -> list[list[Update]]:
    """Every update of each stream, in order.

    options: one for all streams, or one per stream (e.g. each with its own languages).
    audio: per stream, its float32 samples at the model's rate in pieces of any size (with
        ``features``: its fbank frames (n, num_mel_bins) in pieces).
    join_at: per stream, the round at which it starts (default: all at once).
    steps: if given, each batched step's output is appended (for timing and inspection).
    """
    per_stream = [options or StreamOptions()] * len(audio) if not isinstance(options, Sequence) else options
    decoders = [StreamDecoder(model, search, stream_options) for stream_options in per_stream]
    pieces: list[Iterator[np.ndarray]] = [iter(stream) for stream in audio]
    join_at = join_at or [0] * len(audio)
    stepper = BatchStepper(model, search, capacity=max(1, len(audio)))
    updates: list[list[Update]] = [[] for _ in audio]
    round_index = 0
    while not all(decoder.done for decoder in decoders):
        batch: list[tuple[int, Window]] = []
        for index, decoder in enumerate(decoders):
            if decoder.done or round_index < join_at[index]:
                continue
            if not decoder.input_done:
                piece = next(pieces[index], None)
                if piece is None:
                    decoder.finish()
                elif features:
                    decoder.accept_features(piece)
                else:
                    decoder.accept_audio(piece)
            if decoder.has_window():
                batch.append((index, decoder.next_window()))
            elif decoder.input_done:
                updates[index].append(decoder.flush())  # too little audio for another step
        round_index += 1
        if not batch:
            continue
        output = stepper.step(batch)
        if steps is not None:
            steps.append(output)
        for (index, window), stream_output in zip(batch, output.streams, strict=True):
            update = decoders[index].apply(window, stream_output)
            if update is not None:
                updates[index].append(update)
    return updates


def in_pieces(samples: np.ndarray, piece: int) -> list[np.ndarray]:
    """``samples`` cut into pieces of ``piece`` samples (the last one shorter)."""
    return [samples[start : start + piece] for start in range(0, len(samples), piece)]


def final_text(updates: Iterable[Update], channel: int = 0) -> str:
    """The stream's final results on ``channel``, joined: its whole transcript."""
    finals = [r.transcript for u in updates for r in u.results if r.is_final and r.channel == channel]
    return " ".join(text for text in finals if text)


def transcribe(
    model: StreamingTransducer, search: Search, streams: Sequence[np.ndarray], piece: int = 1600
) -> list[str]:
    """Transcripts of 16 kHz float32 signals (at the model's rate), streamed together in pieces of ``piece``."""
    options = StreamOptions(interim_results=False)
    results = decode_streams(model, search, [in_pieces(s, piece) for s in streams], options)
    return [final_text(updates) for updates in results]
