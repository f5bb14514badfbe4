"""Engine results -> protobuf messages."""

from __future__ import annotations

from asr_client.api.asr.v1 import asr_pb2
from google.protobuf.duration_pb2 import Duration

from server.engine.decoder import Update
from server.engine.transcript import Result, Word
from server.model.transducer import StreamingTransducer


def duration_ms(ms: int) -> Duration:
    return Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _words_to_proto(words: tuple[Word, ...]) -> list[asr_pb2.WordInfo]:
    return [
        asr_pb2.WordInfo(
            word=w.text, start_time=duration_ms(w.start_ms), end_time=duration_ms(w.end_ms), confidence=w.confidence
        )
        for w in words
    ]


def result_to_proto(result: Result) -> asr_pb2.StreamingRecognitionResult:
    best = asr_pb2.SpeechRecognitionAlternative(
        transcript=result.transcript, words=_words_to_proto(result.words), confidence=result.confidence
    )
    others = [
        asr_pb2.SpeechRecognitionAlternative(
            transcript=a.transcript, words=_words_to_proto(a.words), confidence=a.confidence
        )
        for a in result.alternatives
    ]
    return asr_pb2.StreamingRecognitionResult(
        alternatives=[best, *others],
        is_final=result.is_final,
        utterance_index=result.utterance_index,
        start_time=duration_ms(result.start_ms),
        end_time=duration_ms(result.end_ms),
        channel=result.channel,
        language_code=result.language_code,
        stability=result.stability,
    )


def update_to_proto(update: Update) -> asr_pb2.StreamingRecognizeResponse:
    return asr_pb2.StreamingRecognizeResponse(
        results=[result_to_proto(r) for r in update.results],
        audio_processed=duration_ms(update.audio_processed_ms),
    )


def model_info(model: StreamingTransducer, is_default: bool) -> asr_pb2.ModelInfo:
    config = model.config
    return asr_pb2.ModelInfo(
        name=config.name,
        languages=list(config.languages),
        sample_rate_hertz=config.sample_rate,
        multi_talker=config.multi_talker,
        chunk_ms=config.encoder.chunk_size * model.frame_shift_ms,
        latency_ms=model.latency_ms,
        num_parameters=model.num_parameters,
        is_default=is_default,
    )
