"""The search-related options of a ``RecognitionConfig``, checked: N-best size (and, with phrase
boosting, the speech contexts).

Every rejection is an INVALID_ARGUMENT ``RequestError`` whose message says what is accepted.
"""

from __future__ import annotations

from asr_client.api.asr.v1 import asr_pb2

from server.api.errors import invalid_argument

MAX_ALTERNATIVES = 10


def max_alternatives(config: asr_pb2.RecognitionConfig) -> int:
    """How many alternatives a final may carry: 0 and 1 both mean one."""
    count = config.max_alternatives
    if not 0 <= count <= MAX_ALTERNATIVES:
        raise invalid_argument(
            f"max_alternatives must be between 0 and {MAX_ALTERNATIVES} (0 and 1 both mean one); got {count}"
        )
    return max(1, count)
