"""The ALS refit inside the running feedback-trainer, on the real broker and Redis.

The trainer runs as a process with a refit threshold of THRESHOLD interactions, its own model
store (seeded with a version that has seen no feedback and learnt nothing, random factors, so the
gate has a current version that a fit on the topic's purchases must beat: against one fitted on
simulated shoppers, the fair gate rightly keeps the simulated one on this shared topic, 0.28 vs
0.27, and nothing would be announced), its own consumer group, Redis key prefixes and model-updates topic. THRESHOLD - 1
views, clicks and purchases of this run's users start no refit; the THRESHOLD-th does: the trainer
replays elmo.feedback (from the earliest offset: the store has no checkpoint), the gate judges the
candidate's twin against the seeded version on each user's last purchase (this run's users buy three
of the same four items of one category each, so they alone are enough held-out users, and each keeps
two purchases in the twin's training data: with one, or with items drawn from a whole category, no
item co-occurs with another and the twin is no better than the random seed; on a fresh topic it then
lost to it by chance, 0.00 vs 0.03, and no refit was announced), and the promotion is announced. A second burst of
THRESHOLD - 1 starts no other refit; one more interaction does, resuming from the checkpoint.
elmo.feedback is shared with other tests: interactions other writers add while this runs count
too, and the assertions say how many there were."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import redis
from kafka import KafkaProducer
from kafka.structs import TopicPartition

from elmo.brand.catalog import load_catalog
from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind, ModelUpdate
from elmo.contracts.topics import CleanupPolicy, Topic
from elmo.interactions import interaction_from_feedback
from elmo.models.artifacts import ArtifactStore
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from services.recommender.als_model import MIN_HELD_OUT_USERS, MODEL_KIND, AlsModel, AlsParams
from services.recommender.commands import read_checkpoint
from tests.integration.feedback.test_corrections_on_kafka import _delete
from tests.integration.kafka_io import ServiceProcess, consume, end_offsets, read_from, start_group_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

THRESHOLD = 120  # ELMO_TRAINER_REFIT_AFTER
# Item a viewed and bought, item b clicked and bought, item c bought: the gate holds out c and the
# twin learns from a and b bought together.
KINDS = (FeedbackKind.RECOMMENDATION_VIEWED, FeedbackKind.RECOMMENDATION_PURCHASED, FeedbackKind.RECOMMENDATION_CLICKED,
         FeedbackKind.RECOMMENDATION_PURCHASED, FeedbackKind.RECOMMENDATION_PURCHASED)  # fmt: skip
ITEM_OF_KIND = (0, 0, 1, 1, 2)  # which of the user's three items each event is about
EVENTS_PER_USER = len(KINDS)
ANNOUNCE_TARGET_S = 60.0  # from the threshold-crossing event on the topic to the ModelUpdate on the topic
QUIET_S = 8.0  # how long a refit that should not start is waited for (a refit here takes a few seconds)


def shoppers(prefix: str, count: int, seed: int) -> list[dict]:
    """`count` views, clicks and purchases of users `<prefix>u<n>`, each shopping within one category."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = {}
    for item in load_catalog().items:
        by_category.setdefault(item.category, []).append(item.id)
    # Four items per category that every shopper of it chooses among, so items recur across users
    # (from a category's 20-60 items, most held-out items would be ones nobody else bought).
    by_category = {category: sorted(items)[:4] for category, items in by_category.items()}
    categories = sorted(c for c, items in by_category.items() if len(items) >= 4)
    values, items = [], []
    for n in range(count):
        user = n // EVENTS_PER_USER
        if n % EVENTS_PER_USER == 0:
            items = rng.sample(by_category[categories[user % len(categories)]], 3)
        item = items[ITEM_OF_KIND[n % EVENTS_PER_USER]]
        event = Feedback(conversation_id=f"{prefix}c{user}", user_id=f"{prefix}u{user:03d}", channel="web",
                         kind=KINDS[n % len(KINDS)], item_id=item, created_at=datetime.now(UTC))  # fmt: skip
        values.append(json.loads(event.model_dump_json()))
    return values


def seed_knowing_nothing(store: ArtifactStore) -> str:
    """A current version over the catalog's items with random factors, fitted on no feedback."""
    items = sorted(item.id for item in load_catalog().items)
    params = AlsParams()
    factors = np.random.default_rng(13).normal(size=(len(items), params.factors))
    return AlsModel(items, factors, [], np.zeros((0, params.factors)), params).save(store, {"trained_on": {"source": "random"}}).version


def send(producer: KafkaProducer, values: list[dict]):  # noqa: ANN201 - the last record's RecordMetadata
    futures = [producer.send(topics.FEEDBACK.name, key=v["conversation_id"].encode(), value=json.dumps(v).encode()) for v in values]
    producer.flush()
    return [f.get(timeout=10) for f in futures][-1]


def wait_recorded(client: redis.Redis, prefix: str, expected: int, timeout_s: float = 60.0) -> int:
    """Waits until the trainer has recorded `expected` interactions under `prefix` (one applied marker each)."""
    deadline = time.monotonic() + timeout_s
    while True:
        recorded = sum(1 for _ in client.scan_iter(match=f"{prefix}:applied:*", count=1000))
        if recorded >= expected or time.monotonic() > deadline:
            return recorded
        time.sleep(0.1)


def refit_outcomes(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^elmo_trainer_als_refits_total\{outcome="(\w+)"\} (\S+)$', text, re.MULTILINE)}


def wait_refits(port: int, total: int, timeout_s: float = 10.0) -> dict[str, float]:
    """The refit outcomes once `total` refits have ended (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while sum((outcomes := refit_outcomes(port)).values()) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    return outcomes


def foreign_interactions(bootstrap: str, since: dict[TopicPartition, int], users: str) -> int:
    """Views, clicks and purchases others wrote to elmo.feedback after `since` (the trainer counted them too)."""
    until = end_offsets(bootstrap, topics.FEEDBACK.name)
    expected = sum(until[tp] - since.get(tp, 0) for tp in until)
    records = read_from(bootstrap, {tp: since.get(tp, 0) for tp in until}, lambda r: True, expected, timeout_s=20)
    events = [Feedback.model_validate_json(r.value) for r in records if r.offset < until[TopicPartition(r.topic, r.partition)]]
    return sum(1 for e in events if interaction_from_feedback(e) is not None and not e.user_id.startswith(users))


def test_the_running_trainer_refits_after_the_threshold_and_announces_the_promotion(
    connections: ConnectionSettings, tmp_path: Path
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    store = ArtifactStore(tmp_path / "store")
    seeded = seed_knowing_nothing(store)
    assert THRESHOLD // EVENTS_PER_USER >= MIN_HELD_OUT_USERS
    updates = Topic(f"test.{run}.model-updates", "model updates of one test run", partitions=1, retention_ms=-1,
                    cleanup_policy=CleanupPolicy.COMPACT)  # fmt: skip
    create_topics(bootstrap, (topics.FEEDBACK, updates, topics.dead_letter_topic("feedback-trainer")))
    group = f"test-feedback-trainer-refit-{run}"
    start_group_at_end(bootstrap, topics.FEEDBACK.name, group)
    since = end_offsets(bootstrap, topics.FEEDBACK.name)
    prefix = f"test:refit:{run}"
    interactions_prefix = f"{prefix}:interactions"
    trainer = ServiceProcess("services.feedback_trainer", group, {
        "ELMO_MODEL_STORE": str(store.root), "ELMO_MODEL_UPDATES_TOPIC": updates.name,
        "ELMO_LEARNING_KEY_PREFIX": prefix, "ELMO_INTERACTIONS_KEY_PREFIX": interactions_prefix,
        "ELMO_TRAINER_REFIT_AFTER": str(THRESHOLD), "ELMO_TRAINER_CORRECTIONS": "false", "ELMO_MODEL_THREADS": "1",
    })  # fmt: skip
    users = f"refit-{run}-"
    first, second = shoppers(users, THRESHOLD, seed=5), shoppers(f"{users}b-", THRESHOLD - 1, seed=6)
    client = redis.Redis.from_url(connections.redis_url)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        trainer.start()
        assert refit_outcomes(trainer.port) == {}

        # 1. One interaction short of the threshold: recorded, no refit.
        send(producer, first[:-1])
        assert wait_recorded(client, interactions_prefix, THRESHOLD - 1) == THRESHOLD - 1
        time.sleep(1.0)
        before_crossing = [v.version for v in store.versions(MODEL_KIND)]
        assert before_crossing == [seeded] and refit_outcomes(trainer.port) == {}

        # 2. The threshold-crossing event -> a refit -> the gate -> a ModelUpdate on the run's topic.
        crossing = send(producer, first[-1:])
        crossed = time.monotonic()
        announced = consume(bootstrap, updates.name, expected=1, timeout_s=ANNOUNCE_TARGET_S)
        seen_s = time.monotonic() - crossed
        assert len(announced) == 1, f"no ModelUpdate on {updates.name} {ANNOUNCE_TARGET_S:.0f} s after the threshold; see the trainer log"
        announce_s = (announced[0].timestamp - crossing.timestamp) / 1000
        update = ModelUpdate.model_validate_json(announced[0].value)
        current = store.current_version(MODEL_KIND)
        assert (update.model_kind, update.action, update.version) == (MODEL_KIND, "promote", current)
        assert current != seeded and update.parent_version == seeded
        meta = store.get(MODEL_KIND, current).meta
        assert meta["status"] == "promoted"
        evaluation = meta["evaluation"]
        assert evaluation["baseline"]["version"] == seeded and evaluation["primary_metric"] == "hit_rate_at_10"
        assert {"hit_rate_at_10"} <= set(evaluation["candidate"]) & set(evaluation["baseline"]["metrics"])
        assert update.metrics == evaluation["candidate"]

        # What it learnt from: the whole topic (no checkpoint yet), up to and including the crossing event.
        training = meta["training_data"]
        assert (training["topic"], training["from"], training["users_prefix"], training["seed"]) == ("elmo.feedback", "earliest", None, 13)
        assert training["offsets"][str(crossing.partition)][1] > crossing.offset
        # The refit ends (counted, checkpoint written) just after it announced.
        assert wait_refits(trainer.port, 1) == {"promoted": 1.0}
        checkpoint = read_checkpoint(store)
        assert checkpoint is not None and checkpoint["offsets"] == training["offsets"] and checkpoint["from"] == "earliest"

        # 3. A second burst one short of the threshold: recorded, and no other refit.
        send(producer, second)
        assert wait_recorded(client, interactions_prefix, 2 * THRESHOLD - 1) == 2 * THRESHOLD - 1
        time.sleep(QUIET_S)
        others = foreign_interactions(bootstrap, since, users)
        noise = f"({others} interactions from other writers to {topics.FEEDBACK.name} counted too)"
        assert refit_outcomes(trainer.port) == {"promoted": 1.0}, noise
        assert {v.version for v in store.versions(MODEL_KIND)} == {seeded, current}, noise
        assert store.current_version(MODEL_KIND) == current, noise
        assert len(consume(bootstrap, updates.name, expected=2, timeout_s=2)) == 1, noise

        # 4. Those were counted: one more crosses the threshold again, and the refit resumes from the checkpoint.
        again = send(producer, shoppers(f"{users}c-", 1, seed=7))
        outcomes = wait_refits(trainer.port, 2, timeout_s=ANNOUNCE_TARGET_S)
        assert sum(outcomes.values()) == 2, (outcomes, noise)
        resumed = max(store.versions(MODEL_KIND), key=lambda v: v.meta["created_at"])
        assert resumed.version not in (seeded, current) and resumed.meta["evaluation"]["baseline"]["version"] == current
        resumed_data = resumed.meta["training_data"]
        assert resumed_data["from"] == "earliest" and resumed_data["offsets"][str(again.partition)][1] > again.offset
        assert {p: r[0] for p, r in resumed_data["offsets"].items()} == {p: r[0] for p, r in training["offsets"].items()}
        if outcomes.get("promoted") == 2.0:
            last_record = consume(bootstrap, updates.name, expected=2, timeout_s=10)[-1]
            resumed_s = f"{(last_record.timestamp - again.timestamp) / 1000:.2f} s"
            last = ModelUpdate.model_validate_json(last_record.value)
            assert last.version == resumed.version == store.current_version(MODEL_KIND) and last.parent_version == current
        else:
            resumed_s = "rejected"
            assert resumed.meta["status"] == "rejected" and store.current_version(MODEL_KIND) == current
    finally:
        producer.close()
        trainer.stop()
        client.close()
        asyncio.run(_delete(connections.redis_url, prefix))

    print(
        f"\nrefit after {THRESHOLD} interactions: threshold-crossing event -> ModelUpdate on the topic {announce_s:.2f} s "
        f"(seen by the test {seen_s:.2f} s); gate {evaluation['candidate']['hit_rate_at_10']:.3f} vs seeded "
        f"{evaluation['baseline']['metrics']['hit_rate_at_10']:.3f}; replayed {sum(e - s for s, e in training['offsets'].values())} "
        f"records of {topics.FEEDBACK.name}; {others} interactions from other writers; from the checkpoint: {resumed_s}"
    )
