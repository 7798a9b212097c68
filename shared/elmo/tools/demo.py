"""`elmo demo`: play a scripted conversation through the running chain and print each turn.

Each customer message is published to `elmo.inbound` and the demo waits for the reply on
`elmo.replies` (matched by `origin_event_id`), then prints the turn with its end-to-end latency.
Services that are not implemented yet simply leave a turn unanswered; the demo says so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from elmo.contracts import topics
from elmo.tools.replay import read_fixture


def play(
    fixture: Path,
    bootstrap_servers: str,
    reply_timeout_s: float = 30.0,
    echo: Callable[[str], None] = print,
) -> int:
    """Play every turn; returns how many turns got a reply."""
    run = uuid.uuid4().hex[:6]
    consumer = KafkaConsumer(topics.REPLIES.name, bootstrap_servers=bootstrap_servers, group_id=None, auto_offset_reset="latest")
    consumer.poll(timeout_ms=1000)  # join the topic's end before anything is sent
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    answered = 0
    try:
        for event in read_fixture(fixture):
            # Fresh ids per run, so replaying the demo is new traffic rather than a duplicate.
            event = {**event, "event_id": f"{event['event_id']}-{run}", "conversation_id": f"{event['conversation_id']}-{run}",
                     "created_at": datetime.now(UTC).isoformat()}
            sent_at = time.monotonic()
            producer.send(topics.INBOUND.name, key=event["conversation_id"].encode(), value=json.dumps(event).encode()).get(timeout=10)
            echo(f"customer ({event['channel']}): {event.get('text') or '[voice note]'}")
            reply = _wait_for_reply(consumer, event["event_id"], reply_timeout_s)
            if reply is None:
                echo(f"  (no reply within {reply_timeout_s:.0f} s: the chain has no generator running yet)")
                continue
            answered += 1
            echo(f"elmo [{reply.get('strategy')}] ({(time.monotonic() - sent_at) * 1000:.0f} ms): {reply['text']}")
    finally:
        producer.close()
        consumer.close()
    return answered


def _wait_for_reply(consumer: KafkaConsumer, origin_event_id: str, timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                reply = json.loads(record.value)
                if reply.get("origin_event_id") == origin_event_id:
                    return reply
    return None
