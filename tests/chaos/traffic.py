"""What a chaos test does from outside: customers' turns on elmo.inbound, replies read from
elmo.replies, poison on the chain's topics, dead letters read back. Only records on the public
topics, as kcat would send and read them; ids come from what the system published."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from elmo.contracts import topics
from elmo.contracts.chain import CHAIN
from elmo.contracts.topics import dead_letter_topic

# Customers, not test fixtures: typos, slang, fragments, emoji.
CUSTOMER_LINES = [
    "hey do u have the pixel 9 in stock??",
    "how long does shipping take to vienna",
    "i wanna return my order pls",
    "whats ur cheapest phone",
    "thx that helped 👍",
    "can i pay with paypal",
    "any running shoes in size 44?",
    "my parcel never arrived wtf",
    "hello? anyone there",
    "do you ship to austria",
]


def customer_turn(run: str, index: int) -> dict:
    conversation = f"chaos-{run}-{index % 40}"
    return {
        "event_id": f"turn-{run}-{index}",
        "conversation_id": conversation,
        "user_id": f"cust-{run}-{index % 40}",
        "channel": "web",
        "text": random.Random(index).choice(CUSTOMER_LINES),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _event_like(**overrides: object) -> dict:
    return {"conversation_id": "poison", "user_id": "poison", "channel": "web", "text": "x", **overrides}


# The kinds of bad values of the issue: huge numbers, deep nesting, invalid UTF-8, NUL bytes,
# wrong types, a JSON array, an empty value, a value over the size budget.
POISON_VALUES = st.one_of(
    st.integers(4301, 8000).map(lambda digits: json.dumps(_event_like()).encode()[:-1] + b', "n": ' + b"7" * digits + b"}"),
    st.integers(2000, 100_000).map(_deep),
    st.integers(2000, 20_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.binary(min_size=1, max_size=64).map(lambda raw: b"\xff\xfe" + raw),
    st.text(max_size=20).map(lambda text: json.dumps(_event_like(text=text + "\x00")).encode()),
    st.text(max_size=20).map(lambda text: json.dumps(_event_like(conversation_id=text)).encode().replace(b'"poison"', b'"p\x00"', 1)),
    st.fixed_dictionaries(
        {
            "conversation_id": st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.none()),
            "user_id": st.one_of(st.floats(allow_nan=False), st.booleans()),
            "channel": st.integers(),
        }
    ).map(lambda doc: json.dumps(doc).encode()),
    st.lists(st.integers(), max_size=5).map(lambda items: json.dumps(items).encode()),
    st.sampled_from([b"", b"null", b"true", b'"text"', b"42", b"{", b"}{"]),
    st.integers(800_000, 1_000_000).map(lambda size: json.dumps(_event_like(text="a" * size)).encode()),
)


def hypothesis_poison(count: int, seed: int = 0) -> list[bytes]:
    """`count` bad values drawn by hypothesis (a fixed seed: a failure is reproducible)."""
    found: list[bytes] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None, suppress_health_check=list(HealthCheck))
    @given(POISON_VALUES)
    def collect(value: bytes) -> None:
        found.append(value)

    collect._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    collect()
    return found


def consumed_topics() -> dict[str, str]:
    """Chain topic -> the service that reads it (its dead letters go to elmo.dlq.<service>)."""
    return {hop.consumes.name: hop.service for hop in CHAIN}


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_request_size=2 * 1024 * 1024, linger_ms=5, retries=20
    )


def send_paced(
    producer: KafkaProducer, items: list[tuple[str, bytes | None, bytes]], rate: float, stop: threading.Event | None = None
) -> list[Sent]:
    """Publish (topic, key, value) items at `rate`/s; returns where each landed (None where refused)."""
    futures = []
    started = time.monotonic()
    for index, (topic, key, value) in enumerate(items):
        if stop is not None and stop.is_set():
            break
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(producer.send(topic, key=key, value=value))
    producer.flush(60)
    landed = []
    for future in futures:
        metadata = future.get(timeout=60)
        landed.append(Sent(metadata.topic, metadata.partition, metadata.offset))
    return landed


class TopicWatcher(threading.Thread):
    """Reads topics from their current end; keeps every record's decoded value."""

    def __init__(self, bootstrap: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
        partitions = [TopicPartition(name, p) for name in names for p in self.consumer.partitions_for_topic(name) or ()]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            self.consumer.position(partition)
        self.records: dict[str, list] = defaultdict(list)
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stopping.is_set():
            for partition, batch in self.consumer.poll(timeout_ms=100).items():
                with self._lock:
                    self.records[partition.topic].extend(batch)

    def values(self, topic: str) -> list[dict]:
        with self._lock:
            return [json.loads(r.value) for r in self.records[topic]]

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.consumer.close()


@dataclass
class Outcome:
    """What customers saw: per turn, the distinct replies (by event id) and raw reply records."""

    sent: int
    replies: dict[str, set[str]] = field(default_factory=dict)
    raw: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, turn_ids: list[str], replies: list[dict]) -> Outcome:
        wanted = set(turn_ids)
        distinct: dict[str, set[str]] = defaultdict(set)
        raw: dict[str, int] = defaultdict(int)
        for reply in replies:
            if reply["origin_event_id"] in wanted:
                distinct[reply["origin_event_id"]].add(reply["event_id"])
                raw[reply["origin_event_id"]] += 1
        return cls(len(turn_ids), dict(distinct), dict(raw))

    @property
    def answered_once(self) -> int:
        return sum(1 for ids in self.replies.values() if len(ids) == 1)

    @property
    def doubled(self) -> int:
        return sum(1 for ids in self.replies.values() if len(ids) > 1)

    @property
    def missing(self) -> int:
        return self.sent - len(self.replies)

    @property
    def redelivered_records(self) -> int:
        return sum(self.raw.values()) - sum(len(ids) for ids in self.replies.values())

    def counts(self) -> dict[str, int]:
        return {
            "turns_sent": self.sent,
            "answered_once": self.answered_once,
            "doubled": self.doubled,
            "missing": self.missing,
            "redelivered_records": self.redelivered_records,
        }

    def assert_every_turn_answered_once(self) -> None:
        assert self.missing == 0 and self.doubled == 0, f"{self.missing} turns unanswered, {self.doubled} doubled"


def wait_for_replies(watcher: TopicWatcher, turn_ids: list[str], timeout_s: float) -> Outcome:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = Outcome.of(turn_ids, watcher.values(topics.REPLIES.name))
        if outcome.missing == 0:
            break
        time.sleep(0.5)
    time.sleep(2.0)  # a doubled reply would arrive right after the first
    return Outcome.of(turn_ids, watcher.values(topics.REPLIES.name))


def report(title: str, **counts: object) -> None:
    print(f"\n[chaos] {title}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


class LocalRedis:
    """A Redis of the test's own (append-only file in `workdir`) that it can stop and start on one port."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.exceptions.RedisError:
                assert time.monotonic() < deadline, "the test's Redis did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def dead_letter_topics() -> list[str]:
    return sorted({dead_letter_topic(service).name for service in consumed_topics().values()})
