"""Errors with which the engine ends a stream (the API layer answers them as INTERNAL)."""

from __future__ import annotations


class EngineError(Exception):
    """The engine could not go on with a stream: its model step raised or stalled.

    The message is written for the client: what happened and that the server serves on.
    """
