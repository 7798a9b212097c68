"""Dead letters as an operator sees them: list, show and replay the records of `elmo.dlq.<service>`.

The core is pure functions over `LetterRecord`s (parse, select, format, what a replay would send),
so unit tests need no broker; the kafka-python shell reads a dead-letter topic to its end outside
any consumer group and produces the originals back to their topics.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

from pydantic import ValidationError

from elmo.contracts import topics
from elmo.contracts.events import DeadLetter

REASONS: tuple[str, ...] = get_args(DeadLetter.model_fields["reason"].annotation)
# A replayed record says where it came from, so its trail can be followed back from the topic.
REPLAYED_FROM_HEADER = "elmo.dlq.replayed_from"
class DeadLetterError(ValueError):
    """A request the dead letters cannot answer: unknown service or reason, a selector matching nothing."""


@dataclass(frozen=True)
class LetterRecord:
    """One record of a dead-letter topic; `letter` is None when its body is not a `DeadLetter`."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: dict[str, str]
    letter: DeadLetter | None
    unreadable: str | None = None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Replay:
    """What replaying one letter sends: its original value and key, to its original topic."""

    source: LetterRecord
    topic: str
    key: bytes | None
    value: bytes

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(REPLAYED_FROM_HEADER, f"{self.source.topic}/{self.source.position}".encode())]


@dataclass(frozen=True)
class Skipped:
    source: LetterRecord
    why: str


# --- the registry ----------------------------------------------------------------------------


def dead_letter_topic_of(service: str) -> str:
    if service in topics.SERVICES:
        return topics.dead_letter_topic(service).name
    edge = f" (the edge services, {', '.join(topics.EDGE_SERVICES)}, consume no topic, so have none)" if topics.EDGE_SERVICES else ""
    raise DeadLetterError(f"unknown service {service!r}: dead-letter topics exist for {', '.join(topics.SERVICES)}{edge}")


def check_reason(reason: str | None) -> str | None:
    if reason is not None and reason not in REASONS:
        raise DeadLetterError(f"unknown reason {reason!r}; reasons: {', '.join(REASONS)}")
    return reason


# --- records ---------------------------------------------------------------------------------


def parse_record(
    topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] = (),
) -> LetterRecord:  # fmt: skip
    text_headers = {name: (raw or b"").decode("utf-8", "replace") for name, raw in headers}
    # Not `codec.decode`: a letter's body legitimately holds what the codec refuses in an event
    # (the escaped NUL of an original dead-lettered for it, say).
    try:
        letter, unreadable = DeadLetter.model_validate_json(value or b""), None
    except ValidationError as error:
        letter, unreadable = None, f"not a DeadLetter: {one_line(str(error), 300)}"
    return LetterRecord(topic, partition, offset, timestamp_ms, key, text_headers, letter, unreadable)


def original_value(letter: DeadLetter) -> bytes:
    """The original value's bytes as the service read them (of the kept part, when truncated)."""
    if letter.original_value_encoding == "base64":
        try:
            return base64.b64decode(letter.original_value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise DeadLetterError(f"original value is not valid base64: {error}") from error
    return letter.original_value.encode("utf-8")


def safe_text(text: str) -> str:
    """`text` with control and other unprintable characters escaped, so it cannot drive a terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def one_line(text: str, limit: int) -> str:
    flat = safe_text(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def value_for_display(letter: DeadLetter) -> str:
    """The original value for people: JSON pretty-printed, other text as is, bytes escaped; all safe."""
    try:
        raw = original_value(letter)
    except DeadLetterError as error:
        return f"<{error}>"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return safe_text(raw.decode("utf-8", "backslashreplace"))
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    return safe_text(text)


# --- selection -------------------------------------------------------------------------------


def matches(record: LetterRecord, selector: str) -> bool:
    """`P:N` (partition and offset), `N` (that offset in any partition), or an event id (the
    dead letter's own or the original event's)."""
    partition, colon, offset = selector.partition(":")
    if colon and partition.isdigit() and offset.isdigit():
        return (record.partition, record.offset) == (int(partition), int(offset))
    if selector.isdigit():
        return record.offset == int(selector)
    letter = record.letter
    return letter is not None and selector in (letter.event_id, letter.original_event_id)


def find_one(records: Sequence[LetterRecord], selector: str) -> LetterRecord:
    found = [r for r in records if matches(r, selector)]
    if not found:
        raise DeadLetterError(f"no dead letter at {selector!r} in {len(records)} record(s)")
    if len(found) > 1:
        raise DeadLetterError(f"{selector!r} matches {', '.join(r.position for r in found)}: give PARTITION:OFFSET")
    return found[0]


def select(
    records: Sequence[LetterRecord],
    selectors: Sequence[str] = (),
    every: bool = False,
    reason: str | None = None,
    newest: int | None = None,
) -> list[LetterRecord]:
    """The records `selectors` name (each must name exactly one), or all when `every`; then only
    those of `reason`, then the `newest` of them; oldest first."""
    chosen = list(records) if every else [find_one(records, s) for s in selectors]
    unique = {(r.partition, r.offset): r for r in chosen}.values()
    kept = sorted((r for r in unique if reason is None or (r.letter is not None and r.letter.reason == reason)), key=_age)
    return kept[-newest:] if newest else kept


def _age(record: LetterRecord) -> tuple[int, int, int]:
    return record.timestamp_ms, record.partition, record.offset


def plan_replay(records: Iterable[LetterRecord]) -> tuple[list[Replay], list[Skipped]]:
    """What replaying `records` sends, and which are refused with why (never a part of a value)."""
    replays: list[Replay] = []
    skipped: list[Skipped] = []
    for record in records:
        letter = record.letter
        if letter is None:
            skipped.append(Skipped(record, f"not a dead letter ({record.unreadable})"))
            continue
        if letter.original_value_truncated:
            why = f"original value truncated (only the first part of its {letter.original_value_bytes} bytes was kept)"
            skipped.append(Skipped(record, why + "; publish it again from its source"))
            continue
        try:
            value = original_value(letter)
        except DeadLetterError as error:
            skipped.append(Skipped(record, str(error)))
            continue
        if len(value) != letter.original_value_bytes:
            skipped.append(Skipped(record, f"original value is {len(value)} bytes, the letter says {letter.original_value_bytes}"))
            continue
        # The record's own key is the original's bytes; the body's copy was decoded for reading.
        key = record.key if record.key is not None else (letter.original_key.encode() if letter.original_key is not None else None)
        replays.append(Replay(record, letter.original_topic, key, value))
    return replays, skipped


# --- formatting ------------------------------------------------------------------------------


def summary_line(records: Sequence[LetterRecord]) -> str:
    by_reason = Counter(r.letter.reason if r.letter is not None else "unreadable" for r in records)
    counts = ", ".join(f"{count} {reason}" for reason, count in by_reason.most_common())
    return f"{len(records)} dead letter(s)" + (f": {counts}" if counts else "")


def list_line(record: LetterRecord) -> str:
    letter = record.letter
    if letter is None:
        return f"{record.position:>10}  {'?':25} {'unreadable':26} {'-':30} {'-':32} {one_line(record.unreadable or '', 80)}"
    origin = f"{letter.original_topic} {letter.original_partition}:{letter.original_offset}"
    created = letter.created_at.isoformat(timespec="seconds")
    event = letter.original_event_id or "-"
    return f"{record.position:>10}  {created:25} {letter.reason:26} {safe_text(origin):30} {safe_text(event):32} {one_line(letter.error_message, 80)}"


def list_header() -> str:
    return f"{'dlq p:off':>10}  {'created_at':25} {'reason':26} {'original topic p:off':30} {'event id':32} error"


def as_dict(record: LetterRecord) -> dict:
    """JSON-ready: where the letter sits, its headers and its body (original value as kept)."""
    body = record.letter.model_dump(mode="json") if record.letter is not None else None
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "headers": record.headers,
        "dead_letter": body,
        "unreadable": record.unreadable,
    }


def show_lines(record: LetterRecord) -> list[str]:
    lines = [f"dead letter {record.topic} {record.position}"]
    letter = record.letter
    if letter is None:
        return [*lines, f"  unreadable: {safe_text(record.unreadable or '')}"]
    key = safe_text(letter.original_key) if letter.original_key is not None else "-"
    fields = {
        "event id": letter.event_id,
        "created at": letter.created_at.isoformat(),
        "service": letter.service,
        "reason": letter.reason,
        "attempts": str(letter.attempts),
        "error class": letter.error_class,
        "original": f"{letter.original_topic} {letter.original_partition}:{letter.original_offset}  key {key}",
        "original event": letter.original_event_id or "-",
    }
    lines += [f"  {name + ':':16}{safe_text(value)}" for name, value in fields.items()]
    lines += ["  error message:", *(f"    {line}" for line in safe_text(letter.error_message).splitlines())]
    lines += ["  headers:", *(f"    {safe_text(n)}: {safe_text(v)}" for n, v in sorted(record.headers.items()))]
    cut = "; TRUNCATED, only the first part kept: cannot be replayed" if letter.original_value_truncated else ""
    lines.append(f"  original value ({letter.original_value_encoding}, {letter.original_value_bytes} bytes{cut}):")
    lines += [f"    {line}" for line in value_for_display(letter).splitlines()]
    return lines


# --- Kafka -----------------------------------------------------------------------------------


def read_dead_letters(bootstrap_servers: str, service: str, timeout_s: float = 30.0) -> list[LetterRecord]:
    """Every record of the service's dead-letter topic up to its end offsets when the read began."""
    from kafka import KafkaConsumer, TopicPartition

    topic = dead_letter_topic_of(service)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        client_id="elmo-dlq", max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise DeadLetterError(f"topic {topic} does not exist (`elmo topics create` creates it)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        records: list[LetterRecord] = []
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end in {timeout_s} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records += [
                    parse_record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers or ())
                    for r in batch
                    if r.offset < ends[tp]
                ]
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
        return records
    finally:
        consumer.close()


def publish_replays(bootstrap_servers: str, replays: Sequence[Replay], timeout_s: float = 30.0) -> int:
    """Produce each replay (acks=all) and wait for every acknowledgement; returns how many."""
    from kafka import KafkaProducer

    if not replays:
        return 0
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", client_id="elmo-dlq-replay", max_request_size=2 * 1024 * 1024)
    try:
        futures = [producer.send(r.topic, key=r.key, value=r.value, headers=r.headers) for r in replays]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
    finally:
        producer.close()
    return len(replays)
