import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    LINEAR16: _ClassVar[AudioEncoding]
    MULAW: _ClassVar[AudioEncoding]
    ALAW: _ClassVar[AudioEncoding]
    FLAC: _ClassVar[AudioEncoding]
    OGG_OPUS: _ClassVar[AudioEncoding]

class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPEECH_EVENT_UNSPECIFIED: _ClassVar[SpeechEventType]
    END_OF_SINGLE_UTTERANCE: _ClassVar[SpeechEventType]
    SPEECH_ACTIVITY_BEGIN: _ClassVar[SpeechEventType]
    SPEECH_ACTIVITY_END: _ClassVar[SpeechEventType]
    SPEECH_ACTIVITY_TIMEOUT: _ClassVar[SpeechEventType]
ENCODING_UNSPECIFIED: AudioEncoding
LINEAR16: AudioEncoding
MULAW: AudioEncoding
ALAW: AudioEncoding
FLAC: AudioEncoding
OGG_OPUS: AudioEncoding
SPEECH_EVENT_UNSPECIFIED: SpeechEventType
END_OF_SINGLE_UTTERANCE: SpeechEventType
SPEECH_ACTIVITY_BEGIN: SpeechEventType
SPEECH_ACTIVITY_END: SpeechEventType
SPEECH_ACTIVITY_TIMEOUT: SpeechEventType

class SpeechContext(_message.Message):
    __slots__ = ("phrases", "boost")
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    BOOST_FIELD_NUMBER: _ClassVar[int]
    phrases: _containers.RepeatedScalarFieldContainer[str]
    boost: float
    def __init__(self, phrases: _Optional[_Iterable[str]] = ..., boost: _Optional[float] = ...) -> None: ...

class EndpointingConfig(_message.Message):
    __slots__ = ("trailing_silence_ms", "max_utterance_ms")
    TRAILING_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_UTTERANCE_MS_FIELD_NUMBER: _ClassVar[int]
    trailing_silence_ms: int
    max_utterance_ms: int
    def __init__(self, trailing_silence_ms: _Optional[int] = ..., max_utterance_ms: _Optional[int] = ...) -> None: ...

class RecognitionConfig(_message.Message):
    __slots__ = ("model", "encoding", "sample_rate_hertz", "audio_channel_count", "selected_channel", "enable_word_time_offsets", "endpointing", "language_codes", "multi_talker", "max_alternatives", "enable_word_confidence", "speech_contexts", "separate_recognition_per_channel")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SELECTED_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENABLE_WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODES_FIELD_NUMBER: _ClassVar[int]
    MULTI_TALKER_FIELD_NUMBER: _ClassVar[int]
    MAX_ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    ENABLE_WORD_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    SEPARATE_RECOGNITION_PER_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    encoding: AudioEncoding
    sample_rate_hertz: int
    audio_channel_count: int
    selected_channel: int
    enable_word_time_offsets: bool
    endpointing: EndpointingConfig
    language_codes: _containers.RepeatedScalarFieldContainer[str]
    multi_talker: bool
    max_alternatives: int
    enable_word_confidence: bool
    speech_contexts: _containers.RepeatedCompositeFieldContainer[SpeechContext]
    separate_recognition_per_channel: bool
    def __init__(self, model: _Optional[str] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ..., audio_channel_count: _Optional[int] = ..., selected_channel: _Optional[int] = ..., enable_word_time_offsets: _Optional[bool] = ..., endpointing: _Optional[_Union[EndpointingConfig, _Mapping]] = ..., language_codes: _Optional[_Iterable[str]] = ..., multi_talker: _Optional[bool] = ..., max_alternatives: _Optional[int] = ..., enable_word_confidence: _Optional[bool] = ..., speech_contexts: _Optional[_Iterable[_Union[SpeechContext, _Mapping]]] = ..., separate_recognition_per_channel: _Optional[bool] = ...) -> None: ...

class VoiceActivityTimeout(_message.Message):
    __slots__ = ("speech_start_timeout", "speech_end_timeout")
    SPEECH_START_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SPEECH_END_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    speech_start_timeout: _duration_pb2.Duration
    speech_end_timeout: _duration_pb2.Duration
    def __init__(self, speech_start_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., speech_end_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StreamingRecognitionConfig(_message.Message):
    __slots__ = ("config", "interim_results", "single_utterance", "enable_voice_activity_events", "voice_activity_timeout")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SINGLE_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    ENABLE_VOICE_ACTIVITY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    VOICE_ACTIVITY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    interim_results: bool
    single_utterance: bool
    enable_voice_activity_events: bool
    voice_activity_timeout: VoiceActivityTimeout
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., interim_results: _Optional[bool] = ..., single_utterance: _Optional[bool] = ..., enable_voice_activity_events: _Optional[bool] = ..., voice_activity_timeout: _Optional[_Union[VoiceActivityTimeout, _Mapping]] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("streaming_config", "audio_content")
    STREAMING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    streaming_config: StreamingRecognitionConfig
    audio_content: bytes
    def __init__(self, streaming_config: _Optional[_Union[StreamingRecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("word", "start_time", "end_time", "confidence")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_time: _duration_pb2.Duration
    end_time: _duration_pb2.Duration
    confidence: float
    def __init__(self, word: _Optional[str] = ..., start_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., confidence: _Optional[float] = ...) -> None: ...

class SpeechRecognitionAlternative(_message.Message):
    __slots__ = ("transcript", "words", "confidence")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    confidence: float
    def __init__(self, transcript: _Optional[str] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ..., confidence: _Optional[float] = ...) -> None: ...

class StreamingRecognitionResult(_message.Message):
    __slots__ = ("alternatives", "is_final", "utterance_index", "start_time", "end_time", "channel", "language_code", "stability", "audio_channel")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionAlternative]
    is_final: bool
    utterance_index: int
    start_time: _duration_pb2.Duration
    end_time: _duration_pb2.Duration
    channel: int
    language_code: str
    stability: float
    audio_channel: int
    def __init__(self, alternatives: _Optional[_Iterable[_Union[SpeechRecognitionAlternative, _Mapping]]] = ..., is_final: _Optional[bool] = ..., utterance_index: _Optional[int] = ..., start_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., channel: _Optional[int] = ..., language_code: _Optional[str] = ..., stability: _Optional[float] = ..., audio_channel: _Optional[int] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("results", "audio_processed", "speech_event_type", "speech_event_time")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    audio_processed: _duration_pb2.Duration
    speech_event_type: SpeechEventType
    speech_event_time: _duration_pb2.Duration
    def __init__(self, results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., audio_processed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., speech_event_type: _Optional[_Union[SpeechEventType, str]] = ..., speech_event_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio_content")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio_content: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("results", "audio_processed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    audio_processed: _duration_pb2.Duration
    def __init__(self, results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., audio_processed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "languages", "sample_rate_hertz", "multi_talker", "chunk_ms", "latency_ms", "num_parameters", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    MULTI_TALKER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    sample_rate_hertz: int
    multi_talker: bool
    chunk_ms: int
    latency_ms: int
    num_parameters: int
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ..., sample_rate_hertz: _Optional[int] = ..., multi_talker: _Optional[bool] = ..., chunk_ms: _Optional[int] = ..., latency_ms: _Optional[int] = ..., num_parameters: _Optional[int] = ..., is_default: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
