"""Reading a topic (elmo.feedback, elmo.replies) as a log: a fixed range of offsets per partition,
outside any consumer group.

A replay decides its end at the start (the end offsets then), so events produced while it reads
are left for the next one and two replays of the same range read the same records. Where it
starts: the earliest retained offset, the first offset at or after a time (`offsets_for_times`),
or explicit per-partition offsets (a checkpoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import ValidationError

from elmo.contracts import topics
from elmo.contracts.events import Event, Feedback

log = logging.getLogger("elmo.feedback_log")

Start = str | datetime | Mapping[int, int]  # "earliest", a time, or offsets per partition
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class LogRecord(Generic[E]):
    partition: int
    offset: int
    event: E


@dataclass
class LogRange:
    """What a read covered: [start, end) per partition, and how many records did not decode."""

    topic: str
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    undecodable: int = 0

    @property
    def records(self) -> int:
        return sum(end - start for start, end in self.offsets.values())

    def as_dict(self) -> dict[str, list[int]]:
        return {str(p): [s, e] for p, (s, e) in sorted(self.offsets.items())}


def parse_start(value: str) -> Start:
    """`earliest` or an ISO time (a naive time is UTC); `checkpoint` is resolved by the caller."""
    if value == "earliest":
        return value
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"--replay-from is earliest, checkpoint or an ISO time, not {value!r}") from error
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def read_feedback(
    bootstrap_servers: str,
    start: Start = "earliest",
    topic: str = topics.FEEDBACK.name,
    end: Mapping[int, int] | None = None,
    timeout_s: float = 120.0,
) -> tuple[list[LogRecord[Feedback]], LogRange]:
    """Every feedback event in [start, end) of each partition, in (partition, offset) order."""
    return read_events(bootstrap_servers, topic, Feedback, start, end, timeout_s)


def read_events(
    bootstrap_servers: str,
    topic: str,
    event_type: type[E],
    start: Start = "earliest",
    end: Mapping[int, int] | None = None,
    timeout_s: float = 120.0,
) -> tuple[list[LogRecord[E]], LogRange]:
    """Every event of `event_type` in [start, end) of each partition, in (partition, offset) order.

    `end` defaults to the end offsets when the read begins. A start below the earliest retained
    offset (deleted by retention) starts at the earliest one, with a warning. A record that does not
    decode as `event_type` is counted in `LogRange.undecodable` and skipped.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        client_id="elmo-log-replay", max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise LookupError(f"topic {topic} has no partitions (does it exist?)")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        earliest = {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}
        latest = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        stop = {p: min(latest[p], end[p]) if end is not None and p in end else latest[p] for p in partitions}
        begin = _start_offsets(consumer, tps, start, earliest, stop)
        covered = LogRange(topic, {p: (begin[p], max(begin[p], stop[p])) for p in partitions})
        records = list(_read(consumer, tps, covered, event_type, timeout_s))
    finally:
        consumer.close()
    return records, covered


def _start_offsets(consumer, tps, start: Start, earliest: dict[int, int], stop: dict[int, int]) -> dict[int, int]:  # noqa: ANN001
    if isinstance(start, str):
        if start != "earliest":
            raise ValueError(f"unknown start {start!r}")
        return dict(earliest)
    if isinstance(start, datetime):
        found = consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in tps})
        # No record at or after the time in a partition: nothing to read there.
        return {tp.partition: (found[tp].offset if found.get(tp) is not None else stop[tp.partition]) for tp in tps}
    begin = {}
    for tp in tps:
        wanted = int(start.get(tp.partition, earliest[tp.partition]))
        if wanted < earliest[tp.partition]:
            log.warning("checkpoint offset deleted by retention; starting at the earliest",
                        extra={"fields": {"partition": tp.partition, "checkpoint": wanted, "earliest": earliest[tp.partition]}})  # fmt: skip
            wanted = earliest[tp.partition]
        begin[tp.partition] = wanted
    return begin


def retained_records(bootstrap_servers: str, topic: str = topics.FEEDBACK.name, timeout_s: float = 10.0) -> int:
    """How many records the topic retains now (end minus earliest offsets, over its partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, client_id="elmo-log-count",
        request_timeout_ms=int(timeout_s * 1000), bootstrap_timeout_ms=int(timeout_s * 1000),
    )  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return 0
        earliest, latest = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return sum(latest[tp] - earliest[tp] for tp in tps)
    finally:
        consumer.close()


def _read(consumer, tps, covered: LogRange, event_type: type[E], timeout_s: float) -> Iterator[LogRecord[E]]:  # noqa: ANN001
    remaining = set()
    for tp in tps:
        start, stop = covered.offsets[tp.partition]
        if start < stop:
            consumer.seek(tp, start)
            remaining.add(tp)
        else:
            consumer.pause(tp)
    deadline = time.monotonic() + timeout_s
    by_partition: dict[int, list[LogRecord[E]]] = {tp.partition: [] for tp in tps}
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay of {covered.topic} did not reach the end offsets in {timeout_s} s: {covered.as_dict()}")
        for tp, batch in consumer.poll(timeout_ms=500, max_records=5000).items():
            stop = covered.offsets[tp.partition][1]
            for record in batch:
                if record.offset >= stop:
                    break
                try:
                    event = event_type.model_validate_json(record.value) if record.value is not None else None
                except ValidationError:
                    event = None
                if event is None:
                    covered.undecodable += 1
                    continue
                by_partition[tp.partition].append(LogRecord(tp.partition, record.offset, event))
            if consumer.position(tp) >= stop or (batch and batch[-1].offset >= stop - 1):
                remaining.discard(tp)
                consumer.pause(tp)
    for partition in sorted(by_partition):
        yield from by_partition[partition]
