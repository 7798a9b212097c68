"""Promotion, hot swap and rollback in a running nlu service, on the real broker and Redis.

The service and the `elmo models` commands share a copy of the session's trained store and a
model-updates topic of this run's own (compacted, like elmo.model-updates), so nothing here is
seen by other tests or by a local demo.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from elmo.contracts import topics
from elmo.contracts.topics import CleanupPolicy, Topic
from elmo.models.artifacts import ArtifactStore, Status
from elmo.models.classifier import EmbeddingClassifier, HeadConfig
from elmo.models.embeddings import SentenceEmbedder
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from elmo.models.intent_model import INTENTS, MODEL_KIND, features, read_examples, train
from tests.integration.kafka_io import REPO_ROOT, ServiceProcess, end_offsets, start_group_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTTERANCES = [
    "hi there", "how much are the trail runners?", "do you have it in blue", "where is my order", "i want a refund",
    "thanks a lot", "can i talk to a person", "what's your return policy", "any discounts this week?", "bye",
]  # fmt: skip


@dataclass
class Setup:
    store: ArtifactStore
    topic: str
    original: str  # the version trained with seed 13 (current at start)
    retrained: str  # same data, seed 7: a legitimate new version
    corrupted: str  # trained on shuffled labels


def shuffled_label_head(store: ArtifactStore, embedder: SentenceEmbedder) -> str:
    """A deliberately broken candidate: the intent head trained on the training texts with their labels shuffled."""
    examples = [e for e in read_examples() if e.split == "train"][::3]  # a third is plenty to learn noise
    texts = [e.text for e in examples]
    labels = [e.intent for e in examples]
    random.Random(5).shuffle(labels)
    head = EmbeddingClassifier.fit(features(embedder.encode(texts), texts), labels, list(INTENTS), HeadConfig(epochs=15, seed=5))
    saved = store.save(
        MODEL_KIND,
        head.save,
        {"embedding_model": embedder.version, "training_data": {"description": "intents.jsonl train split, labels shuffled"}},
        make_current=False,
    )
    return saved.version


@pytest.fixture(scope="module")
def setup(trained_model_store, connections: ConnectionSettings, tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("registry") / "store"
    shutil.copytree(trained_model_store.root, root)
    store = ArtifactStore(root)
    original = store.current_version(MODEL_KIND)
    embedder = SentenceEmbedder()
    retrained, _ = train(store, embedder, seed=7, make_current=False)
    corrupted = shuffled_label_head(store, embedder)
    assert len({original, retrained.version, corrupted}) == 3
    topic = f"test.{uuid.uuid4().hex[:8]}.model-updates"
    create_topics(
        connections.kafka_bootstrap_servers,
        (Topic(topic, "model updates of one test run", partitions=1, retention_ms=-1, cleanup_policy=CleanupPolicy.COMPACT),),
    )
    return Setup(store, topic, original, retrained.version, corrupted)


@pytest.fixture(scope="module")
def nlu(setup: Setup, connections: ConnectionSettings) -> Iterator[ServiceProcess]:
    group = f"test-nlu-swap-{uuid.uuid4().hex[:8]}"
    start_group_at_end(connections.kafka_bootstrap_servers, topics.UTTERANCES.name, group)
    service = ServiceProcess(
        "services.nlu", group, {"ELMO_MODEL_STORE": str(setup.store.root), "ELMO_MODEL_UPDATES_TOPIC": setup.topic}
    )
    try:
        service.start()
        yield service
    finally:
        service.stop()


def elmo(setup: Setup, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ELMO_MODEL_STORE": str(setup.store.root), "ELMO_MODEL_UPDATES_TOPIC": setup.topic}
    return subprocess.run(
        [str(Path(sys.executable).parent / "elmo"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def wait_for_version(service: ServiceProcess, version: str, timeout_s: float = 30.0) -> float:
    """Seconds until /readyz reports `version`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status, body = service.readiness()
        if status == 200 and body.get("model_version") == version:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"/readyz still shows {service.readiness()[1]} after {timeout_s} s, expected {version}")


def model_gauge(service: ServiceProcess) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=2) as response:
        return [line for line in response.read().decode().splitlines() if line.startswith("elmo_model_loaded{")]


class Stream:
    """Utterances sent at a steady rate from a thread, remembering when each was sent."""

    def __init__(self, bootstrap: str, prefix: str, count: int, rate: float) -> None:
        self.bootstrap, self.prefix, self.count, self.rate = bootstrap, prefix, count, rate
        self.sent_at: dict[str, float] = {}
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        started = time.monotonic()
        for i in range(self.count):
            delay = started + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conversation = f"{self.prefix}-{i % 6}"
            event = {"event_id": uuid.uuid4().hex, "conversation_id": conversation, "user_id": "u-" + conversation,
                     "channel": "web", "text": UTTERANCES[i % len(UTTERANCES)], "source": "text"}  # fmt: skip
            producer.send(topics.UTTERANCES.name, key=conversation.encode(), value=json.dumps(event).encode())
            self.sent_at[event["event_id"]] = time.monotonic()
        producer.flush()
        producer.close()

    def start(self) -> Stream:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(timeout=120)


def read_outputs(bootstrap: str, offsets, prefix: str, expected: int, timeout_s: float = 120.0, settle_s: float = 3.0) -> list:
    """Understandings of this stream's conversations, until `expected` arrived and `settle_s` more passed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(list(offsets))
    for partition, offset in offsets.items():
        consumer.seek(partition, offset)
    kept: list = []
    deadline, settle_until = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            for batch in consumer.poll(timeout_ms=200).values():
                kept += [r for r in batch if r.key.decode().startswith(prefix)]
            if settle_until is None and len(kept) >= expected:
                settle_until = time.monotonic() + settle_s
    finally:
        consumer.close()
    return kept


def announcements(bootstrap: str, topic: str) -> list[dict]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return [{"key": r.key.decode(), **json.loads(r.value)} for r in consumer]
    finally:
        consumer.close()


def test_a_promotion_swaps_the_running_model_between_batches_and_a_rollback_swaps_it_back(
    setup: Setup, nlu: ServiceProcess, connections: ConnectionSettings
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    assert nlu.readiness()[1]["model_version"] == setup.original

    # 1. Promote (forced) while utterances stream in at 25/s.
    before = end_offsets(bootstrap, topics.UNDERSTANDINGS.name)
    prefix = f"swap-{uuid.uuid4().hex[:8]}"
    stream = Stream(bootstrap, prefix, count=200, rate=25).start()
    time.sleep(3)
    clicked = time.monotonic()
    promoted = elmo(setup, "models", "promote", MODEL_KIND, setup.retrained[:10], "--force")
    announced = time.monotonic()
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["version"] == setup.retrained
    swap_s = wait_for_version(nlu, setup.retrained)
    serving_since = time.monotonic()
    stream.join()

    outputs = read_outputs(bootstrap, before, prefix, expected=200)
    values = [json.loads(r.value) for r in outputs]
    by_input = defaultdict(list)
    for value in values:
        by_input[value["parent_event_id"]].append(value["nlu_model_version"])
    assert set(by_input) == set(stream.sent_at) and len(values) == 200  # every input exactly once
    # Per partition, in offset order: the old version, then the new one, never back.
    per_partition = defaultdict(list)
    for record, value in zip(outputs, values, strict=True):
        per_partition[record.partition].append((record.offset, value["nlu_model_version"]))
    for versions in per_partition.values():
        sequence = [v for _, v in sorted(versions)]
        switch = sequence.index(setup.retrained) if setup.retrained in sequence else len(sequence)
        assert set(sequence[:switch]) <= {setup.original} and set(sequence[switch:]) <= {setup.retrained}, sequence
    old = sum(v == [setup.original] for v in by_input.values())
    new = sum(v == [setup.retrained] for v in by_input.values())
    assert old > 0 and new > 0 and old + new == 200
    late = [event_id for event_id, sent in stream.sent_at.items() if sent > serving_since]
    assert late and all(by_input[event_id] == [setup.retrained] for event_id in late)
    assert [line for line in model_gauge(nlu) if line.endswith(" 1.0")] == [
        f'elmo_model_loaded{{model="{MODEL_KIND}",service="nlu",version="{setup.retrained}"}} 1.0'
    ]
    print(
        f"\npromote command {announced - clicked:.2f} s; announcement -> /readyz shows it {swap_s:.3f} s; "
        f"{old} outputs with the old version, {new} with the new"
    )

    # 2. Roll back: one command, the running service serves the previous version again.
    rolled = elmo(setup, "models", "rollback", MODEL_KIND)
    assert rolled.returncode == 0, rolled.stderr
    rollback_s = wait_for_version(nlu, setup.original)
    assert setup.store.current_version(MODEL_KIND) == setup.original
    assert setup.store.get(MODEL_KIND, setup.retrained).meta["status"] == Status.ROLLED_BACK

    before = end_offsets(bootstrap, topics.UNDERSTANDINGS.name)
    prefix = f"back-{uuid.uuid4().hex[:8]}"
    stream = Stream(bootstrap, prefix, count=30, rate=50).start()
    stream.join()
    values = [json.loads(r.value) for r in read_outputs(bootstrap, before, prefix, expected=30)]
    assert sorted(v["parent_event_id"] for v in values) == sorted(stream.sent_at)
    assert {v["nlu_model_version"] for v in values} == {setup.original}
    print(f"rollback command -> /readyz shows it {rollback_s:.3f} s")

    updates = announcements(bootstrap, setup.topic)
    assert [(u["key"], u["action"], u["version"]) for u in updates] == [
        (MODEL_KIND, "promote", setup.retrained),
        (MODEL_KIND, "rollback", setup.original),
    ]


def test_a_candidate_trained_on_shuffled_labels_is_rejected_by_the_gate_and_kept_with_the_reason(
    setup: Setup, nlu: ServiceProcess, connections: ConnectionSettings
) -> None:
    current = setup.store.current_version(MODEL_KIND)
    announced_before = len(announcements(connections.kafka_bootstrap_servers, setup.topic))

    result = elmo(setup, "models", "promote", MODEL_KIND, setup.corrupted)

    assert result.returncode == 1, result.stdout + result.stderr
    decision = json.loads(result.stdout)
    assert decision["promoted"] is False
    assert decision["candidate_metrics"]["held_out_accuracy"] < 0.3 < 0.8 < decision["current_metrics"]["held_out_accuracy"]
    assert setup.store.current_version(MODEL_KIND) == current
    meta = setup.store.get(MODEL_KIND, setup.corrupted).meta
    assert meta["status"] == Status.REJECTED and "held_out_accuracy" in meta["status_reason"]
    assert meta["evaluation"]["baseline"]["version"] == current
    assert meta["evaluation"]["candidate"]["held_out_accuracy"] == decision["candidate_metrics"]["held_out_accuracy"]
    assert len(announcements(connections.kafka_bootstrap_servers, setup.topic)) == announced_before
    assert nlu.readiness()[1]["model_version"] == current  # the running service never heard of it

    listed = elmo(setup, "models", "list", MODEL_KIND)
    assert listed.returncode == 0 and f"{setup.corrupted}" in listed.stdout and "rejected" in listed.stdout


def test_the_gate_judges_measure_what_training_measured(setup: Setup) -> None:
    from services.nlu.service import held_out_evaluator as nlu_evaluator
    from services.sentiment.service import held_out_evaluator as sentiment_evaluator

    nlu_version = setup.store.get(MODEL_KIND, setup.original)
    nlu_metrics = nlu_evaluator().evaluate(nlu_version)
    assert nlu_metrics["held_out_accuracy"] == pytest.approx(nlu_version.meta["metrics"]["held_out_accuracy"], abs=1e-6)

    sentiment_version = setup.store.current("sentiment")
    sentiment_metrics = sentiment_evaluator().evaluate(sentiment_version)
    assert sentiment_metrics["brand_accuracy"] == pytest.approx(sentiment_version.meta["metrics"]["brand_accuracy"], abs=1e-4)
