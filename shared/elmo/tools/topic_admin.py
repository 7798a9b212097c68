"""Create and list the registry's topics with kafka-python's admin client (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaAdminClient

from elmo.contracts.topics import Topic, all_topics

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicState:
    topic: Topic
    exists: bool
    partitions: int | None


def _admin(bootstrap_servers: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="elmo-topic-admin", request_timeout_ms=15000)


def create_topics(bootstrap_servers: str, topics: tuple[Topic, ...] | None = None, replication_factor: int = 1) -> list[str]:
    """Create every missing topic; returns the names created. Existing topics are left untouched."""
    topics = topics or all_topics()
    admin = _admin(bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return []
        response = admin.create_topics(
            {
                t.name: {"num_partitions": t.partitions, "replication_factor": replication_factor, "configs": t.config}
                for t in missing
            },
            raise_errors=False,
            wait_for_metadata=True,
        )
        failures = [
            f"{result['name']}: {result.get('error_message') or result['error_code']}"
            for result in response.get("topics", [])
            if result.get("error_code") not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError("could not create topics: " + "; ".join(failures))
        return [t.name for t in missing]
    finally:
        admin.close()


def describe_topics(bootstrap_servers: str, topics: tuple[Topic, ...] | None = None) -> list[TopicState]:
    topics = topics or all_topics()
    admin = _admin(bootstrap_servers)
    try:
        found = {t["name"]: t for t in admin.describe_topics([t.name for t in topics]) if not t.get("error_code")}
    finally:
        admin.close()
    return [
        TopicState(t, t.name in found, len(found[t.name]["partitions"]) if t.name in found else None) for t in topics
    ]


def skip_to_end(bootstrap_servers: str, group: str, topic: str) -> int:
    """Commit `group`'s offsets at `topic`'s end (its consumers must be stopped); returns records skipped."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        skipped = 0
        for partition in partitions:
            committed = consumer.committed(partition)
            skipped += ends[partition] - committed if committed is not None else 0
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
        return skipped
    finally:
        consumer.close()
