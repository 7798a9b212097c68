"""What a service is, as the runtime sees it: one input topic, one output topic and a core.

A service module declares a `Stage` and hands it to `elmo.runtime.run_stage`; everything else
(consuming, deduplication, retries, dead letters, metrics, health, shutdown) is the runtime's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry

from elmo.contracts.events import Event
from elmo.contracts.topics import Topic, dead_letter_topic

In = TypeVar("In", bound=Event)



@dataclass(frozen=True)
class Routed:
    """An output for another of the stage's topics than `emits` (one listed in `also_emits`)."""

    topic: Topic
    event: Event


# What the core returns for one input: no output, one event (or a `Routed` one), several, or a
# `RejectedInput` for an input it cannot use (the rest of the batch goes on; the rejected one is
# dead-lettered).
CoreResult = Event | Routed | Sequence[Event | Routed] | BaseException | None
BatchCore = Callable[[Sequence[In]], Sequence[CoreResult] | Awaitable[Sequence[CoreResult]]]
# A stage with a hot-swappable model: its core also receives the model serving the batch.
ModelBatchCore = Callable[[Sequence[In], Any], Sequence[CoreResult] | Awaitable[Sequence[CoreResult]]]
# Loads a version of the stage's model (None: the store's CURRENT); returns the model and its
# version. Runs in a worker thread, at start and whenever a ModelUpdate names another version.
ModelLoader = Callable[[str | None], tuple[Any, str]]


async def call_hook(hook: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    """Call a stage's hook, synchronous or not."""
    if hook is None:
        return
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


class RejectedInput(Exception):
    """Raised by a core for an input that can never succeed (corrupt audio, say): no retries."""


@dataclass
class ModelSlot:
    """The model a stage serves with: readiness waits for it, /metrics shows its version.

    With `Stage.load_model`, `name` is the model kind in the store (the key of its ModelUpdates).
    """

    name: str
    version: str | None = None
    loading: str | None = None  # a version being loaded to be swapped in
    last_load_error: str | None = None

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
    # With `load_model`, called as process_batch(events, model) (a `ModelBatchCore`).
    process_batch: BatchCore[In] | ModelBatchCore[In]
    model: ModelSlot | None = None
    # The hot-swap hook: the runtime loads the model with it (off the event loop), hands it to the
    # core with every batch, and swaps in versions announced on elmo.model-updates between batches.
    load_model: ModelLoader | None = None
    # Called once before consuming starts (load models, open clients); readiness waits for it.
    on_start: Callable[[], Awaitable[None] | None] | None = None
    on_stop: Callable[[], Awaitable[None] | None] | None = None
    # Called with the service's metrics registry, for metrics of the stage's own (served on /metrics).
    register_metrics: Callable[[CollectorRegistry], None] | None = None
    description: str = ""
    # Topics besides `emits` that the core may route outputs to, with `Routed`.
    also_emits: tuple[Topic, ...] = ()
    # Called with every decoded input of a batch (duplicates and dead-lettered ones included) once
    # the batch's outputs are acknowledged and before its offsets are committed: for state that
    # must change only after the outputs exist. A failure re-runs the batch, so it must be idempotent.
    after_batch: Callable[[Sequence[In]], Awaitable[None] | None] | None = None
    _runs_in_thread: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # A synchronous core is CPU work (a model): it runs in a worker thread so the event loop
        # keeps heartbeats, health checks and publishing going meanwhile.
        self._runs_in_thread = not inspect.iscoroutinefunction(self.process_batch)
        if self.load_model is not None and self.model is None:
            raise ValueError(f"stage {self.name}: load_model needs a ModelSlot naming the model kind")

    @property
    def runs_in_thread(self) -> bool:
        return self._runs_in_thread

    @property
    def output_topics(self) -> tuple[Topic, ...]:
        return (self.emits, *self.also_emits)

    @property
    def dead_letters(self) -> Topic:
        return dead_letter_topic(self.name)
