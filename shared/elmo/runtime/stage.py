"""What a service is, as the runtime sees it: one input topic, one output topic and a core.

A service module declares a `Stage` and hands it to `elmo.runtime.run_stage`; everything else
(consuming, deduplication, retries, dead letters, metrics, health, shutdown) is the runtime's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

from elmo.contracts.events import Event
from elmo.contracts.topics import Topic, dead_letter_topic

In = TypeVar("In", bound=Event)

# What the core returns for one input: no output, one event, several, or a `RejectedInput` for an
# input it cannot use (the rest of the batch goes on; the rejected one is dead-lettered).
CoreResult = Event | Sequence[Event] | BaseException | None
BatchCore = Callable[[Sequence[In]], Sequence[CoreResult] | Awaitable[Sequence[CoreResult]]]


class RejectedInput(Exception):
    """Raised by a core for an input that can never succeed (corrupt audio, say): no retries."""


@dataclass
class ModelSlot:
    """The model a stage serves with: readiness waits for it, /metrics shows its version."""

    name: str
    version: str | None = None

    @property
    def loaded(self) -> bool:
        return self.version is not None

    def set_loaded(self, version: str) -> None:
        self.version = version


@dataclass
class Stage(Generic[In]):
    name: str
    consumes: Topic
    emits: Topic
    input_type: type[In]
    process_batch: BatchCore[In]
    model: ModelSlot | None = None
    # Called once before consuming starts (load models, open clients); readiness waits for it.
    on_start: Callable[[], Awaitable[None] | None] | None = None
    on_stop: Callable[[], Awaitable[None] | None] | None = None
    # Called with the service's metrics registry, for metrics of the stage's own (served on /metrics).
    register_metrics: Callable[[CollectorRegistry], None] | None = None
    description: str = ""
    _runs_in_thread: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # A synchronous core is CPU work (a model): it runs in a worker thread so the event loop
        # keeps heartbeats, health checks and publishing going meanwhile.
        self._runs_in_thread = not inspect.iscoroutinefunction(self.process_batch)

    @property
    def runs_in_thread(self) -> bool:
        return self._runs_in_thread

    @property
    def dead_letters(self) -> Topic:
        return dead_letter_topic(self.name)
