"""Hot swap without a broker: a new model version is taken between batches, never within one."""

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from elmo.contracts.events import InboundMessage, ModelUpdate, Utterance
from elmo.contracts.topics import Topic
from elmo.runtime.health import Health
from elmo.runtime.idempotency import InMemorySeenEvents
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.model_updates import version_to_serve
from elmo.runtime.processing import BatchProcessor, RetryPolicy
from elmo.runtime.records import ConsumedRecord
from elmo.runtime.serving_model import ServingModel
from elmo.runtime.stage import ModelSlot, Stage

IN, OUT = Topic("test.in", ""), Topic("test.out", "")
KIND = "test-model"


class VersionedModel:
    def __init__(self, version: str) -> None:
        self.version = version

    def apply(self, text: str) -> str:
        return f"{self.version}:{text}"


class Loader:
    """Loads `VersionedModel`s; a version in `broken` fails, one in `held` waits to be released."""

    def __init__(self, current: str = "v1") -> None:
        self.current = current
        self.broken: set[str] = set()
        self.held: dict[str, threading.Event] = {}
        self.loaded: list[str] = []

    def __call__(self, version):
        version = version or self.current
        if version in self.held:
            self.held[version].wait(10)
        if version in self.broken:
            raise FileNotFoundError(f"no weights for {version}")
        self.loaded.append(version)
        return VersionedModel(version), version


def inbound(event_id: str, text: str) -> bytes:
    return json.dumps({"event_id": event_id, "conversation_id": "c1", "user_id": "u1", "channel": "web", "text": text}).encode()


def records(*pairs: tuple[str, str]) -> list[ConsumedRecord]:
    return [ConsumedRecord(IN.name, 0, offset, b"c1", inbound(*pair)) for offset, pair in enumerate(pairs)]


class Published(list):
    async def __call__(self, outgoing):
        self.extend(outgoing)

    def texts(self) -> list[str]:
        return [json.loads(r.value)["text"] for r in self if r.topic == OUT.name]


class Service:
    """What app.py wires: a ServingModel, the stage bound to it, batches handled inside `batch()`."""

    def __init__(self, core, loader: Loader | None = None) -> None:
        self.loader = loader or Loader()
        self.slot = ModelSlot(KIND)
        self.metrics = ServiceMetrics("svc")
        self.serving = ServingModel(self.slot, self.loader, self.metrics)
        stage = Stage("svc", IN, OUT, InboundMessage, core, model=self.slot, load_model=self.loader)
        self.out = Published()
        self.processor = BatchProcessor(self.serving.bind(stage), self.out, InMemorySeenEvents(), self.metrics, RetryPolicy(3, 0, 0))

    async def handle(self, batch):
        async with self.serving.batch():
            await self.processor.handle(batch)

    def gauge(self, version: str):
        return self.metrics.registry.get_sample_value("elmo_model_loaded", {"service": "svc", "model": KIND, "version": version})

    def failures(self):
        return self.metrics.registry.get_sample_value("elmo_model_load_failures_total", {"service": "svc", "model": KIND})


def derive(events, model):
    return [e.derive(Utterance, text=model.apply(e.text), source="text") for e in events]


async def test_the_batch_in_flight_finishes_with_the_old_model_and_the_next_batch_uses_the_new_one():
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_core(events, model):
        entered.set()
        await release.wait()
        return derive(events, model)

    service = Service(slow_core)
    await service.serving.load_current()
    in_flight = asyncio.create_task(service.handle(records(("a", "one"), ("b", "two"))))
    await entered.wait()

    service.serving.request("v2")
    await service.serving.settled()  # loaded, but the batch in flight still has v1
    assert service.slot.version == "v1" and service.loader.loaded == ["v1", "v2"]
    release.set()
    await in_flight
    assert service.slot.version == "v2"  # swapped as the batch ended
    await service.handle(records(("c", "three")))

    assert service.out.texts() == ["v1:one", "v1:two", "v2:three"]
    assert service.gauge("v2") == 1 and service.gauge("v1") is None
    assert service.metrics.registry.get_sample_value("elmo_model_swaps_total", {"service": "svc", "model": KIND}) == 1


async def test_retries_within_a_batch_keep_the_model_the_batch_started_with():
    service = None
    calls = []

    async def core(events, model):
        calls.append((len(events), model.version))
        if len(calls) == 1:  # the whole batch fails once; meanwhile a new version gets ready
            service.serving.request("v2")
            await service.serving.settled()
            raise RuntimeError("transient")
        return derive(events, model)

    service = Service(core)
    await service.serving.load_current()
    await service.handle(records(("a", "one"), ("b", "two")))
    await service.handle(records(("c", "three")))

    assert calls == [(2, "v1"), (1, "v1"), (1, "v1"), (1, "v2")]
    assert service.out.texts() == ["v1:one", "v1:two", "v2:three"]


async def test_a_synchronous_core_gets_the_model_in_its_worker_thread():
    def core(events, model):
        assert threading.current_thread() is not threading.main_thread()
        return derive(events, model)

    service = Service(core)
    await service.serving.load_current()
    assert service.processor.stage.runs_in_thread
    await service.handle(records(("a", "one")))
    assert service.out.texts() == ["v1:one"]


async def test_a_version_that_fails_to_load_is_counted_and_the_old_model_keeps_serving():
    service = Service(lambda events, model: derive(events, model))
    service.loader.broken.add("v2")
    await service.serving.load_current()

    service.serving.request("v2")
    await service.serving.settled()
    await service.handle(records(("a", "one")))

    assert service.out.texts() == ["v1:one"]
    assert service.slot.version == "v1" and service.failures() == 1
    ready, detail = Health(stall_after_s=1, model=service.slot, started=True).readiness(True)
    assert ready and detail["model_version"] == "v1" and detail["model"] == KIND
    assert "v2: FileNotFoundError" in detail["model_load_error"]
    # A later good version clears the error.
    service.serving.request("v3")
    await service.serving.settled()
    assert service.slot.version == "v3" and service.slot.last_load_error is None


async def test_an_idle_service_swaps_at_once_and_readiness_shows_the_version_on_its_way():
    service = Service(lambda events, model: derive(events, model))
    service.loader.held["v2"] = threading.Event()
    await service.serving.load_current()

    service.serving.request("v2")
    await asyncio.sleep(0.05)
    _, detail = Health(stall_after_s=1, model=service.slot, started=True).readiness(True)
    assert detail["model_version"] == "v1" and detail["model_loading"] == "v2"
    service.loader.held["v2"].set()
    await service.serving.settled()
    assert service.slot.version == "v2" and service.gauge("v2") == 1


async def test_a_newer_announcement_supersedes_one_still_loading_and_going_back_cancels_it():
    service = Service(lambda events, model: derive(events, model))
    service.loader.held["v2"] = threading.Event()
    await service.serving.load_current()

    service.serving.request("v2")
    await asyncio.sleep(0.05)
    service.serving.request("v3")  # v2 is still loading
    service.loader.held["v2"].set()
    await service.serving.settled()
    assert service.slot.version == "v3"
    assert service.metrics.registry.get_sample_value("elmo_model_swaps_total", {"service": "svc", "model": KIND}) == 1

    service.loader.held["v4"] = threading.Event()
    service.serving.request("v4")
    await asyncio.sleep(0.05)
    service.serving.request("v3")  # a rollback to what serves, before v4 is ready
    service.loader.held["v4"].set()
    await service.serving.settled()
    assert service.slot.version == "v3"


def test_a_stage_with_a_model_loader_needs_a_slot_naming_the_kind():
    with pytest.raises(ValueError, match="ModelSlot"):
        Stage("svc", IN, OUT, InboundMessage, derive, load_model=Loader())


def update(kind: str, version: str, at: datetime) -> ModelUpdate:
    return ModelUpdate(model_kind=kind, version=version, artifact_uri=f"file:///store/{kind}/{version}", created_at=at)


def test_the_last_update_for_the_service_s_kind_wins_and_older_announcements_do_not_undo_the_store():
    now = datetime.now(UTC)
    updates = [update(KIND, "v2", now - timedelta(minutes=3)), update(KIND, "v3", now - timedelta(minutes=2)), update("other", "x", now)]
    assert version_to_serve(updates, KIND, catching_up=False, current_moved_at=None) == "v3"
    assert version_to_serve(updates, "absent", catching_up=False, current_moved_at=None) is None
    # On start: CURRENT moved (say `elmo train`) after the last announcement: keep CURRENT.
    assert version_to_serve(updates, KIND, catching_up=True, current_moved_at=now - timedelta(minutes=1)) is None
    assert version_to_serve(updates, KIND, catching_up=True, current_moved_at=now - timedelta(minutes=5)) == "v3"
