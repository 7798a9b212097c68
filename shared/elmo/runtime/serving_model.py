"""Hot swap: which model version serves each batch, and swapping in a new one between batches.

A stage with `load_model` gets one `ServingModel`. A requested version (a ModelUpdate) is loaded
in a worker thread while batches go on with the old model. The new model is taken at a batch
boundary: a batch in flight finishes with the model it started with (its retries included) and
the next batch gets the new one, so no record is dropped or handled twice because of a swap. A
version that fails to load is logged and counted, and the old model keeps serving.

Everything here except the load itself runs on the event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread

from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.stage import ModelLoader, ModelSlot, Stage

log = logging.getLogger("elmo.runtime")


class ServingModel:
    def __init__(self, slot: ModelSlot, load: ModelLoader, metrics: ServiceMetrics) -> None:
        self.slot = slot
        self._load = load
        self.metrics = metrics
        self._model: Any = None
        self._batch_model: Any = None
        self._in_batch = False
        self._ready: tuple[Any, str] | None = None  # loaded, waiting for the batch in flight
        self._wanted: str | None = None
        self._loader: asyncio.Task | None = None

    @property
    def kind(self) -> str:
        return self.slot.name

    @property
    def version(self) -> str | None:
        return self.slot.version

    @property
    def model(self) -> Any:
        return self._model

    async def load_current(self) -> None:
        """The store's current version, before consuming starts; a failure here fails the start."""
        model, version = await anyio.to_thread.run_sync(self._load, None)
        self._swap(model, version)

    def request(self, version: str) -> None:
        """Serve `version` from the next batch on, once it is loaded (in the background)."""
        if version == self.slot.version:
            # Back to what is serving (say a rollback right after a promotion): drop what was on its way.
            self._wanted, self._ready = None, None
            return
        if (self._ready is not None and self._ready[1] == version) or self._wanted == version:
            return
        self._wanted = version
        if self._loader is None or self._loader.done():
            self._loader = asyncio.create_task(self._load_wanted(), name=f"load-{self.kind}")

    async def settled(self) -> None:
        """Wait until every requested version is loaded (or failed to)."""
        while self._loader is not None and not self._loader.done():
            await asyncio.shield(self._loader)

    async def close(self) -> None:
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Any]:
        """Around the handling of one batch: the model it uses, fixed for the whole batch."""
        self._take_ready()
        self._in_batch = True
        self._batch_model = self._model
        try:
            yield self._batch_model
        finally:
            self._in_batch = False
            self._take_ready()  # an idle service swaps now rather than at its next batch

    def bind(self, stage: Stage) -> Stage:
        """`stage` as the batch processor runs it: the core called with the batch's model."""
        core = stage.process_batch

        if inspect.iscoroutinefunction(core):

            async def with_model(events: Sequence[Any]) -> Any:
                return await core(events, self._batch_model)  # type: ignore[call-arg]

        else:

            def with_model(events: Sequence[Any]) -> Any:  # type: ignore[misc]
                return core(events, self._batch_model)  # type: ignore[call-arg]

        return dataclasses.replace(stage, process_batch=with_model, load_model=None)

    async def _load_wanted(self) -> None:
        while (version := self._wanted) is not None:
            self.slot.loading = version
            try:
                model, loaded = await anyio.to_thread.run_sync(self._load, version)
                if loaded != version:
                    raise ValueError(f"asked for version {version}, the loader returned {loaded}")
            except Exception as error:  # noqa: BLE001 - any failure keeps the old model serving
                log.exception(
                    "model version failed to load; the previous one keeps serving",
                    extra={"fields": {"model": self.kind, "version": version, "serving": self.slot.version}},
                )
                self.metrics.model_load_failed(self.kind)
                self.slot.last_load_error = f"{version}: {type(error).__name__}: {error}"[:300]
                if self._wanted == version:
                    self._wanted = None
                continue
            finally:
                self.slot.loading = None
            if self._wanted != version:  # superseded while it loaded
                continue
            self._wanted = None
            self.slot.last_load_error = None
            if self._in_batch:
                self._ready = (model, loaded)
                log.info("model loaded; swapping in after the batch in flight", extra={"fields": {"model": self.kind, "version": loaded}})
            else:
                self._swap(model, loaded)

    def _take_ready(self) -> None:
        if self._ready is not None:
            model, version = self._ready
            self._ready = None
            self._swap(model, version)

    def _swap(self, model: Any, version: str) -> None:
        previous = self.slot.version
        self._model = model
        self.slot.set_loaded(version)
        self.metrics.model_loaded(self.kind, version)
        if previous is not None:
            self.metrics.model_swapped(self.kind)
            log.info("model swapped", extra={"fields": {"model": self.kind, "from": previous, "to": version}})
