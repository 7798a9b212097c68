"""Publish fixture events from a JSON-lines file, keyed by conversation, at a steady rate.

Fixture format: one JSON object per line, each an event of the contract (for `elmo.inbound`, an
inbound message: event_id, conversation_id, user_id, channel, text or audio). Blank lines and lines
starting with `#` are skipped. `created_at` is stamped with the send time when a line has none, so
end-to-end latency is measured from the moment the event entered Kafka.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer


class FixtureError(ValueError):
    pass


@dataclass(frozen=True)
class ReplayReport:
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def read_fixture(path: Path) -> list[dict]:
    """Every event of the file, checked up front so a bad line publishes nothing."""
    events: list[dict] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            raise FixtureError(f"{path}:{number}: not JSON: {error}") from error
        if not isinstance(event, dict) or not isinstance(event.get("conversation_id"), str):
            raise FixtureError(f"{path}:{number}: expected a JSON object with a string 'conversation_id'")
        events.append(event)
    if not events:
        raise FixtureError(f"{path}: no events")
    return events


def _rounds(events: list[dict], loop: bool) -> Iterator[dict]:
    round_number = 0
    while True:
        for event in events:
            if round_number and "event_id" in event:
                # Each round is new traffic, not a redelivery: give it ids the dedupe has not seen.
                event = {**event, "event_id": f"{event['event_id']}-r{round_number}"}
            yield event
        round_number += 1
        if not loop:
            return


def replay(
    path: Path,
    topic: str,
    bootstrap_servers: str,
    rate: float | None = None,
    loop: bool = False,
    limit: int | None = None,
) -> ReplayReport:
    events = read_fixture(path)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, client_id="elmo-replay")
    interval = 1.0 / rate if rate else 0.0
    started = time.perf_counter()
    sent = 0
    try:
        for event in _rounds(events, loop):
            if limit is not None and sent >= limit:
                break
            if interval:
                # Pace against the schedule, not the previous send, so the rate does not drift.
                delay = started + sent * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if "created_at" not in event:
                event = {**event, "created_at": datetime.now(UTC).isoformat()}
            producer.send(topic, key=event["conversation_id"].encode(), value=json.dumps(event).encode())
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return ReplayReport(sent=sent, seconds=time.perf_counter() - started)
