"""Liveness and readiness, as Kubernetes probes them.

Liveness is about the processing loop, not the process: a consumer can sit in its group while its
handler is stuck, so /healthz fails when one batch has been running longer than `stall_after_s`
or the consuming task has died. Readiness is "broker reachable, model loaded, not shutting down".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from elmo.runtime.stage import ModelSlot


@dataclass
class Health:
    stall_after_s: float
    model: ModelSlot | None = None
    consuming: Callable[[], bool] = lambda: False
    started: bool = False
    stopping: bool = False
    batches_done: int = 0
    _batch_started_at: float | None = field(default=None, repr=False)
    _last_progress_at: float = field(default_factory=time.monotonic, repr=False)

    def batch_started(self) -> None:
        self._batch_started_at = time.monotonic()

    def batch_finished(self) -> None:
        self._batch_started_at = None
        self._last_progress_at = time.monotonic()
        self.batches_done += 1

    def liveness(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        running_for = None if self._batch_started_at is None else now - self._batch_started_at
        stalled = running_for is not None and running_for > self.stall_after_s
        loop_dead = self.started and not self.stopping and not self.consuming()
        detail: dict[str, object] = {
            "batch_running_s": None if running_for is None else round(running_for, 3),
            "since_last_batch_s": round(now - self._last_progress_at, 3),
            "batches_done": self.batches_done,
            "consuming": self.consuming(),
        }
        if stalled:
            detail["problem"] = f"a batch has run for more than {self.stall_after_s} s"
        elif loop_dead:
            detail["problem"] = "the consuming task is not running"
        return not (stalled or loop_dead), detail

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
