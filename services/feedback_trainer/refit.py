"""Refitting the recommender's ALS model from the feedback log, in the background.

`RefitTrigger` (pure) counts new interactions and says when a refit is due: after `after` of them,
or `interval_s` after the last refit if any arrived (or none ran yet in this process).
`Refitter` runs the refit (`services.recommender.commands.replay_and_train`: replay elmo.feedback
from the checkpoint, fit on clicks and purchases, gate on purchases the current version has not
seen) in a worker thread, one at a time, so consuming never waits; interactions that arrive
meanwhile count towards the next refit. The registry announces a promoted version on
elmo.model-updates and the recommender hot-swaps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter

from elmo.models.registry import ModelRegistry
from services.recommender.commands import RefitInProgress, ReplayReport, checkpoint_problem, read_checkpoint, replay_and_train

log = logging.getLogger("elmo.feedback_trainer")


@dataclass
class RefitTrigger:
    after: int
    interval_s: float
    pending: int = 0
    last_refit_at: float | None = None  # monotonic seconds; None: no refit in this process yet
    started_at: float = 0.0

    def add(self, interactions: int) -> None:
        self.pending += interactions

    def due(self, now: float) -> bool:
        if self.pending >= self.after:
            return True
        since = now - (self.started_at if self.last_refit_at is None else self.last_refit_at)
        return since >= self.interval_s and (self.pending > 0 or self.last_refit_at is None)

    def take(self, now: float) -> int:
        """A refit starts: what it covers leaves the count."""
        taken, self.pending, self.last_refit_at = self.pending, 0, now
        return taken

    def put_back(self, taken: int) -> None:
        """A refit failed or could not run: its interactions still wait."""
        self.pending += taken


class RefitMetrics:
    def __init__(self) -> None:
        self.refits = Counter(
            "elmo_trainer_als_refits", "ALS refits from the feedback log by outcome (promoted, rejected, busy, failed).", ["outcome"],
            registry=None,
        )  # fmt: skip

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.refits)


class Refitter:
    def __init__(
        self,
        refit: Callable[[], ReplayReport],
        trigger: RefitTrigger,
        metrics: RefitMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refit = refit
        self.trigger = trigger
        self.metrics = metrics or RefitMetrics()
        self.clock = clock
        self.trigger.started_at = clock()
        self._task: asyncio.Task | None = None
        self.reports: list[ReplayReport] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def record(self, interactions: int) -> None:
        """Called by the learner with the number of new interactions of each batch."""
        self.trigger.add(interactions)
        self.maybe_start()

    def maybe_start(self) -> asyncio.Task | None:
        if self.running or not self.trigger.due(self.clock()):
            return None
        taken = self.trigger.take(self.clock())
        self._task = asyncio.get_running_loop().create_task(self._run(taken))
        return self._task

    async def _run(self, taken: int) -> ReplayReport | None:
        try:
            report = await anyio.to_thread.run_sync(self.refit)
        except RefitInProgress:  # `elmo train recommender --replay-from` in another process
            self.metrics.refits.labels("busy").inc()
            self.trigger.put_back(taken)
            return None
        except Exception:
            self.metrics.refits.labels("failed").inc()
            self.trigger.put_back(taken)
            log.exception("ALS refit from the feedback log failed", extra={"fields": {"interactions": taken}})
            return None
        outcome = "promoted" if report.decision.promoted else "rejected"
        self.metrics.refits.labels(outcome).inc()
        self.reports.append(report)
        log.info(f"ALS refit from the feedback log: {outcome}", extra={"fields": {**report.as_dict(), "new_interactions": taken}})
        return report

    async def run_timer(self, check_s: float = 60.0) -> None:
        while True:
            await asyncio.sleep(min(check_s, self.trigger.interval_s))
            self.maybe_start()

    async def close(self, timeout_s: float = 120.0) -> None:
        if self.running:
            await asyncio.wait([self._task], timeout=timeout_s)  # type: ignore[list-item]


def refit_from_log(registry: ModelRegistry, bootstrap_servers: str, seed: int, topic: str) -> Callable[[], ReplayReport]:
    """The refit the service runs: from the last checkpoint if it is of this topic, all users and the
    current format, else the whole topic (a format-1 checkpoint's cells include views: rebuilt)."""

    def refit() -> ReplayReport:
        checkpoint = read_checkpoint(registry.store)
        problem = "no checkpoint" if checkpoint is None else checkpoint_problem(checkpoint, topic, None)
        if checkpoint is not None and problem is not None:
            log.warning(f"ALS refit replays {topic} from the earliest offset: {problem}")
        start = "checkpoint" if problem is None else "earliest"
        return replay_and_train(registry, bootstrap_servers, start, seed, topic=topic)

    return refit
