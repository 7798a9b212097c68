"""Contracts between services: event models, the codec and the topic registry.

These are the only coupling between services; a service never imports another service.
"""

from elmo.contracts import events, topics
from elmo.contracts.codec import (
    InvalidEvent,
    MalformedRecord,
    UndecodableRecord,
    UnsupportedSchemaVersion,
    decode,
    encode,
)

__all__ = [
    "InvalidEvent",
    "MalformedRecord",
    "UndecodableRecord",
    "UnsupportedSchemaVersion",
    "decode",
    "encode",
    "events",
    "topics",
]
