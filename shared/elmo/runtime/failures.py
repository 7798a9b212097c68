"""Transient versus permanent: which failures are a dependency's, and which are a record's own.

A record that fails for itself (bad content, a bug its content triggers) is dead-lettered after
bounded retries. A failure because Redis or Kafka is unreachable or slow says nothing about the
record: dead-lettering it would lose a customer's message to an outage, so the batch is rewound
and read again, with backoff, until the dependency is back.
"""

from __future__ import annotations

import aiokafka.errors
import redis.exceptions

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    # builtins.ConnectionError covers refused and reset connections; TimeoutError is also asyncio's.
    ConnectionError,
    TimeoutError,
    # BusyLoadingError (Redis replaying its append-only file) is a ConnectionError too.
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
    aiokafka.errors.NodeNotReadyError,
    aiokafka.errors.RequestTimedOutError,
    aiokafka.errors.NotEnoughReplicasError,
    aiokafka.errors.NotEnoughReplicasAfterAppendError,
    aiokafka.errors.NotLeaderForPartitionError,
    aiokafka.errors.LeaderNotAvailableError,
)


class DependencyUnavailable(Exception):
    """A batch could not be handled because a dependency failed; read it again later."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}"[:500])
        self.cause = cause


def is_transient(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, is a dependency's transient failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (DependencyUnavailable, *TRANSIENT_ERRORS)):
            return True
        if getattr(current, "retriable", False) is True and isinstance(current, aiokafka.errors.KafkaError):
            return True
        current = current.__cause__ or current.__context__
    return False
