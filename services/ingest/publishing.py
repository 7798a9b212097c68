"""Publishing events and waiting for Kafka's acknowledgement before the webhook answers 2xx.

The webhook core takes any `Publisher`; `KafkaPublisher` is the real one (acks=all, idempotent
producer, keyed by conversation id), `InMemoryPublisher` records what would have been published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from elmo.contracts.codec import encode
from elmo.contracts.events import Event
from elmo.contracts.topics import Topic

PRODUCER_NAME = "ingest"


class PublishFailed(Exception):
    """Kafka did not acknowledge in time: nothing can be promised to the caller."""


class Publisher(Protocol):
    async def publish(self, topic: Topic, events: Sequence[Event]) -> None:
        """Publish every event and return once all are acknowledged; raise `PublishFailed` otherwise."""
        ...

    async def reachable(self, timeout_s: float = 1.0) -> bool: ...


def headers_for(event: Event) -> list[tuple[str, bytes]]:
    return [
        ("elmo.event_type", event.event_type.encode()),
        ("elmo.schema_version", str(event.schema_version).encode()),
        ("elmo.origin_event_id", event.origin_event_id.encode()),
        ("elmo.producer", PRODUCER_NAME.encode()),
    ]


class KafkaPublisher:
    def __init__(self, bootstrap_servers: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="elmo-ingest",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(timeout_s * 1000),
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, topic: Topic, events: Sequence[Event]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                # Send everything first, then wait for every acknowledgement: one round trip.
                pending = [
                    await self.producer.send(topic.name, encode(event), key=event.key, headers=headers_for(event)) for event in events
                ]
                await asyncio.gather(*pending)
        except Exception as error:  # noqa: BLE001 - timeouts and every Kafka error mean the same to the caller
            raise PublishFailed(f"{type(error).__name__}: {error}") from error

    async def reachable(self, timeout_s: float = 1.0) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.producer.client.fetch_all_metadata()
        except Exception:  # noqa: BLE001 - not reachable, whatever the reason
            return False
        return True


class InMemoryPublisher:
    """For tests: records events per topic; `fail` makes the next publishes fail like an unreachable broker."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Event]] = []
        self.fail = False

    async def publish(self, topic: Topic, events: Sequence[Event]) -> None:
        if self.fail:
            raise PublishFailed("broker unreachable (test)")
        self.published.extend((topic.name, event) for event in events)

    def on(self, topic: Topic) -> list[Event]:
        return [event for name, event in self.published if name == topic.name]

    async def reachable(self, timeout_s: float = 1.0) -> bool:
        return not self.fail
