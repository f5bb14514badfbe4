"""Client of the streaming speech recognition service: library, generated stubs, ``asr`` CLI.

The protobuf messages are in ``asr_client.api.asr.v1.asr_pb2`` (re-exported as ``asr_pb2``).
"""

from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_client.audio import PcmAudio, read_audio_file
from asr_client.client import AsrClient, AsyncAsrClient, recognition_config, streaming_config

__all__ = [
    "AsrClient",
    "AsyncAsrClient",
    "PcmAudio",
    "asr_pb2",
    "asr_pb2_grpc",
    "read_audio_file",
    "recognition_config",
    "streaming_config",
]
__version__ = "0.1.0"
