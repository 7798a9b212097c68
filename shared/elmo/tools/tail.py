"""Read a topic and yield its records as JSON-ready dicts (for `elmo tail` and tests)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from kafka import KafkaConsumer


def tail(
    topic: str,
    bootstrap_servers: str,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout_s: float | None = None,
) -> Iterator[dict]:
    """Yield records until `max_records` are read or nothing arrives for `idle_timeout_s`."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        client_id="elmo-tail",
    )
    seen = 0
    last_record_at = time.monotonic()
    try:
        while max_records is None or seen < max_records:
            batches = consumer.poll(timeout_ms=200)
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - last_record_at > idle_timeout_s:
                    return
                continue
            last_record_at = time.monotonic()
            for records in batches.values():
                for record in records:
                    yield _as_dict(record)
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return
    finally:
        consumer.close()


def _as_dict(record) -> dict:  # noqa: ANN001 - a kafka-python ConsumerRecord
    try:
        value: object = json.loads(record.value) if record.value is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        value = record.value.decode("utf-8", "replace")
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in (record.headers or [])},
        "value": value,
    }
