"""The local stack for real: a Kafka 4 broker and a Redis on this machine.

The broker and Redis are left running on purpose: the other integration
tests share them, and the next kafka_up/redis_up is then a fast no-op.
"""

import socket
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from elmo.local.kafka_broker import kafka_status, kafka_up
from elmo.local.redis_server import redis_status, redis_up
from elmo.local.stack_settings import LocalStackSettings, find_repo_root

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> LocalStackSettings:
    return LocalStackSettings.from_env(find_repo_root(Path(__file__).parent))


def test_kafka_up_twice_the_second_time_is_a_quick_no_op(settings: LocalStackSettings) -> None:
    kafka_up(settings)

    started = time.monotonic()
    kafka_up(settings)

    assert time.monotonic() - started < 5.0
    status = kafka_status(settings)
    assert status["bootstrap"] == settings.kafka_bootstrap
    assert status["listening"] is True
    assert Path(str(status["data_dir"])).is_relative_to(settings.state_dir)


def test_the_broker_round_trips_a_record(settings: LocalStackSettings) -> None:
    kafka_up(settings)
    topic = f"elmo-it-local-stack-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
        _produce(settings.kafka_bootstrap, topic, key=b"conversation-1", value=b"hello from elmo")

        record = _consume_first(settings.kafka_bootstrap, topic)

        assert (record.key, record.value) == (b"conversation-1", b"hello from elmo")
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_redis_up_twice_then_it_answers_ping(settings: LocalStackSettings) -> None:
    redis_up(settings)
    redis_up(settings)

    with socket.create_connection((settings.redis_host, settings.redis_port), timeout=2.0) as connection:
        connection.sendall(b"PING\r\n")
        assert connection.recv(64).startswith(b"+PONG")
    assert redis_status(settings)["answers_ping"] is True


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=10)
    finally:
        producer.close()


def _consume_first(bootstrap: str, topic: str):  # -> kafka ConsumerRecord
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                return records[0]
        raise AssertionError(f"no record came back from {topic} within 15 s")
    finally:
        consumer.close()
