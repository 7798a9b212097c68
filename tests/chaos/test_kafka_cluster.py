"""A three-broker local cluster with one broker killed (SIGKILL) mid-stream and started again: with
replication factor 3, min.insync.replicas=2 and an idempotent acks=all producer, every record sent is
acknowledged, and a consumer group reads each exactly once. The cluster is the test's own (a
temporary state dir, free ports), so the project's broker is never touched. Outsider test: records
produced and read with kafka-python only; the ids checked are the ones in the records' values."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from elmo.local.kafka_broker import kafka_down, kafka_up, kill_node, start_node
from elmo.local.stack_settings import LocalStackSettings, find_repo_root
from tests.chaos.traffic import report

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_full]

PARTITIONS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackSettings]:
    base = _free_port_block(first=19092, size=6)
    settings = LocalStackSettings(
        repo_root=find_repo_root(Path(__file__).parent),
        state_dir=tmp_path_factory.mktemp("kafka-cluster"),
        kafka_port=base,
        kafka_controller_port=base + 1,
        kafka_brokers=3,
        kafka_start_timeout_s=180.0,
    )
    try:
        kafka_up(settings)
        yield settings
    finally:
        kafka_down(settings)


@dataclass
class Delivery:
    """What the producer was told and what the consumer group read, per record id."""

    acked: dict[str, tuple[int, int]] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Every (partition, offset) an id was read at, once per time the group handed it over.
    read_at: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    commit_failures: list[str] = field(default_factory=list)
    reader_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_a_broker_killed_mid_stream_loses_and_doubles_no_record(cluster: LocalStackSettings) -> None:
    run, rate, count = uuid.uuid4().hex[:8], 100.0, 3000  # 30 s of records
    topic = f"elmo-chaos-cluster-{run}"
    _create_topic(cluster.kafka_bootstrap, topic)
    delivery = Delivery()
    stop_reading = threading.Event()
    reader = threading.Thread(target=_read_group, args=(cluster.kafka_bootstrap, topic, f"chaos-cluster-{run}", delivery, stop_reading))
    reader.start()
    victim = _leader_of_most_partitions(cluster.kafka_bootstrap, topic)
    timeline: dict[str, float] = {}
    breaker = threading.Thread(target=_kill_and_restart, args=(cluster, topic, victim, count / rate / 3, timeline))
    producer = KafkaProducer(
        bootstrap_servers=cluster.kafka_bootstrap, acks="all", enable_idempotence=True, retries=1_000_000,
        delivery_timeout_ms=120_000, request_timeout_ms=10_000, linger_ms=5,
    )  # fmt: skip
    started = time.monotonic()
    try:
        breaker.start()
        ids = _send_paced(producer, topic, run, count, rate, delivery)
        producer.flush(120)
        breaker.join()
        _wait_until_read(delivery, set(delivery.acked), timeout_s=120)
    finally:
        producer.close(10)
        stop_reading.set()
        reader.join(30)
        breaker.join()
    in_log = _ids_in_log(cluster.kafka_bootstrap, topic)

    read_offsets = {record_id: set(places) for record_id, places in delivery.read_at.items()}
    consumed_once = sum(1 for i in ids if len(read_offsets.get(i, ())) == 1)
    doubled = sum(1 for places in read_offsets.values() if len(places) > 1)
    redelivered = sum(len(places) - len(set(places)) for places in delivery.read_at.values())
    missing = [i for i in ids if i not in read_offsets]
    report(
        f"broker {victim} of 3 killed (SIGKILL) under {rate:g} records/s, RF 3, min.insync.replicas=2",
        sent=len(ids),
        acknowledged=len(delivery.acked),
        failed=len(delivery.failed),
        consumed_once=consumed_once,
        doubled=doubled,
        missing=len(missing),
        redelivered=redelivered,
        commit_failures=len(delivery.commit_failures),
        in_log_once=sum(1 for i in ids if in_log[i] == 1),
        in_log_twice_or_more=sum(1 for n in in_log.values() if n > 1),
        broker_down_s=round(timeline["restarted"] - timeline["killed"], 1),
        restart_took_s=round(timeline["restarted"] - timeline["restarting"], 1),
        isr_full_again_s=round(timeline["isr_full"] - timeline["restarted"], 1),
        longest_ack_gap_s=round(max(b - a for a, b in zip(sorted(delivery.ack_times), sorted(delivery.ack_times)[1:])), 2),
        total_s=round(time.monotonic() - started, 1),
    )
    assert delivery.reader_error is None
    assert delivery.failed == {}
    assert set(delivery.acked) == set(ids)
    assert missing == [] and doubled == 0 and redelivered == 0
    assert consumed_once == len(ids)
    assert all(in_log[i] == 1 for i in ids) and len(in_log) == len(ids)


def _send_paced(producer: KafkaProducer, topic: str, run: str, count: int, rate: float, delivery: Delivery) -> list[str]:
    ids = []
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        record_id = f"{run}-{index}"
        value = json.dumps({"id": record_id, "n": index}).encode()
        future = producer.send(topic, key=f"customer-{index % 60}".encode(), value=value)
        future.add_callback(_on_ack, delivery, record_id)
        future.add_errback(_on_failure, delivery, record_id)
        ids.append(record_id)
    return ids


def _on_ack(delivery: Delivery, record_id: str, metadata) -> None:  # noqa: ANN001 - kafka RecordMetadata
    with delivery.lock:
        delivery.acked[record_id] = (metadata.partition, metadata.offset)
        delivery.ack_times.append(time.monotonic())


def _on_failure(delivery: Delivery, record_id: str, error: Exception) -> None:
    with delivery.lock:
        delivery.failed[record_id] = repr(error)


def _read_group(bootstrap: str, topic: str, group: str, delivery: Delivery, stop: threading.Event) -> None:
    """One member of a consumer group; commits after every batch, as a service does."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    record_id = json.loads(record.value)["id"]
                    with delivery.lock:
                        delivery.read_at[record_id].append((record.partition, record.offset))
            if batch:
                try:
                    consumer.commit()
                except KafkaError as error:  # the coordinator moved; the next batch's commit covers this one
                    delivery.commit_failures.append(repr(error))
    except Exception as error:  # noqa: BLE001 - reported by the test, not lost in a thread
        delivery.reader_error = repr(error)
        raise
    finally:
        consumer.close()


def _kill_and_restart(cluster: LocalStackSettings, topic: str, victim: int, after_s: float, timeline: dict[str, float]) -> None:
    time.sleep(after_s)
    kill_node(cluster, victim)
    timeline["killed"] = time.monotonic()
    time.sleep(5)
    timeline["restarting"] = time.monotonic()
    start_node(cluster, victim)
    timeline["restarted"] = time.monotonic()
    _wait_for_full_isr(cluster.kafka_bootstrap, topic, replicas=3, timeout_s=120)
    timeline["isr_full"] = time.monotonic()


def _wait_until_read(delivery: Delivery, wanted: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with delivery.lock:
            if wanted <= delivery.read_at.keys():
                return
        time.sleep(0.5)


def _ids_in_log(bootstrap: str, topic: str) -> Counter[str]:
    """Every id in the topic, read from the beginning to today's end by a consumer outside any group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: Counter[str] = Counter()
        deadline = time.monotonic() + 60
        while any(consumer.position(p) < ends[p] for p in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.update(json.loads(record.value)["id"] for record in records)
        return found
    finally:
        consumer.close()


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        config = {"min.insync.replicas": "2"}
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 3, "configs": config}}, wait_for_metadata=True)
    finally:
        admin.close()
    _wait_for_full_isr(bootstrap, topic, replicas=3, timeout_s=30)


def _partitions(bootstrap: str, topic: str) -> list[dict]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()


def _leader_of_most_partitions(bootstrap: str, topic: str) -> int:
    leaders = Counter(partition["leader_id"] for partition in _partitions(bootstrap, topic))
    return min(leaders, key=lambda broker: (-leaders[broker], broker))


def _wait_for_full_isr(bootstrap: str, topic: str, replicas: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            partitions = _partitions(bootstrap, topic)
            if len(partitions) == PARTITIONS and all(len(p["isr_nodes"]) == replicas for p in partitions):
                return
        except Exception:  # noqa: BLE001 - a broker coming back may answer with errors for a moment
            pass
        time.sleep(0.5)
    raise AssertionError(f"{topic} did not get {replicas} in-sync replicas on every partition within {timeout_s:.0f} s")


def _free_port_block(first: int, size: int) -> int:
    """The first port from `first` on (in steps of 10) where `size` consecutive ports are all free."""
    for base in range(first, first + 2000, 10):
        if all(_port_free(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free consecutive ports from {first}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
