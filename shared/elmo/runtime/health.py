"""Liveness and readiness, as Kubernetes probes them.

Liveness is progress, not the process: a consumer can sit in its group while its handler is
stuck, or re-read one batch forever. /healthz fails when one batch has been running longer than
`stall_after_s`, the consuming task has died, the same batch has been rewound more than
`max_rereads` times in a row, or a partition with records waiting has not advanced for
`progress_stall_s`. Readiness is "broker reachable, model loaded, not shutting down".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from elmo.runtime.records import ConsumedRecord
from elmo.runtime.stage import ModelSlot

# (topic, partition) -> the partition's high watermark as last fetched, or None when not known.
HighWater = Callable[[str, int], int | None]


@dataclass
class PartitionProgress:
    """Per partition: the next offset still to be finished, and since when it has not moved."""

    stall_after_s: float
    _position: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)

    def reading(self, records: Iterable[ConsumedRecord]) -> None:
        """A batch was fetched: a partition seen for the first time starts waiting now."""
        now = time.monotonic()
        for record in records:
            self._position.setdefault((record.topic, record.partition), (record.offset, now))

    def finished(self, records: Iterable[ConsumedRecord]) -> None:
        """A batch's outcome is durable: its partitions have advanced."""
        now = time.monotonic()
        for record in records:
            key = (record.topic, record.partition)
            if record.offset + 1 > self._position.get(key, (-1, now))[0]:
                self._position[key] = (record.offset + 1, now)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked from this consumer are no longer its to advance."""
        for key in partitions:
            self._position.pop(key, None)

    def stuck(self, high_water: HighWater) -> list[str]:
        """Partitions with records past the next unfinished offset and no progress for too long."""
        now = time.monotonic()
        stuck = []
        for (topic, partition), (offset, since) in sorted(self._position.items()):
            waiting = (high_water(topic, partition) or 0) > offset
            if waiting and now - since > self.stall_after_s:
                stuck.append(f"{topic}[{partition}]@{offset}")
        return stuck


@dataclass
class Health:
    stall_after_s: float
    model: ModelSlot | None = None
    consuming: Callable[[], bool] = lambda: False
    started: bool = False
    stopping: bool = False
    batches_done: int = 0
    # The batch was rewound this many times in a row (a success resets it).
    rereads: int = 0
    max_rereads: int = 50
    stuck_partitions: Callable[[], list[str]] = lambda: []
    _batch_started_at: float | None = field(default=None, repr=False)
    _last_progress_at: float = field(default_factory=time.monotonic, repr=False)

    def batch_started(self) -> None:
        self._batch_started_at = time.monotonic()

    def batch_finished(self) -> None:
        self._batch_started_at = None
        self._last_progress_at = time.monotonic()
        self.batches_done += 1
        self.rereads = 0

    def batch_rewound(self) -> None:
        self._batch_started_at = None
        self.rereads += 1

    def liveness(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        running_for = None if self._batch_started_at is None else now - self._batch_started_at
        stalled = running_for is not None and running_for > self.stall_after_s
        loop_dead = self.started and not self.stopping and not self.consuming()
        rereading = self.rereads > self.max_rereads
        stuck = self.stuck_partitions()
        detail: dict[str, object] = {
            "batch_running_s": None if running_for is None else round(running_for, 3),
            "since_last_batch_s": round(now - self._last_progress_at, 3),
            "batches_done": self.batches_done,
            "consuming": self.consuming(),
            "rereads_in_a_row": self.rereads,
            "stuck_partitions": stuck,
        }
        if stalled:
            detail["problem"] = f"a batch has run for more than {self.stall_after_s} s"
        elif loop_dead:
            detail["problem"] = "the consuming task is not running"
        elif rereading:
            detail["problem"] = f"the same batch was rewound {self.rereads} times in a row (limit {self.max_rereads})"
        elif stuck:
            detail["problem"] = f"partitions with records waiting have not advanced: {', '.join(stuck)}"
        return not (stalled or loop_dead or rereading or stuck), detail

    def readiness(self, broker_reachable: bool) -> tuple[bool, dict[str, object]]:
        model_loaded = self.model is None or self.model.loaded
        detail: dict[str, object] = {
            "started": self.started,
            "stopping": self.stopping,
            "broker_reachable": broker_reachable,
            "model_loaded": model_loaded,
            "model_version": self.model.version if self.model else None,
        }
        if self.model is not None:
            detail["model"] = self.model.name
            if self.model.loading is not None:
                detail["model_loading"] = self.model.loading
            if self.model.last_load_error is not None:
                detail["model_load_error"] = self.model.last_load_error
        return self.started and not self.stopping and broker_reachable and model_loaded, detail
