"""From an agent's correction to the running nlu service, on the real broker and Redis.

The nlu service and the feedback-trainer run as processes sharing a copy of the session's trained
model store and a model-updates topic of this run's own. Utterances stream into the nlu at a steady
rate while twenty `intent_corrected` feedbacks (from distinct agents: the cap is per user) teach a
made-up product word; the trainer fine-tunes a head, the gate promotes it, the announcement makes
the running nlu swap it in between batches, and no utterance is lost or handled twice.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kafka import KafkaProducer

from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind, ModelUpdate, Reply
from elmo.contracts.topics import CleanupPolicy, Topic
from elmo.models.artifacts import ArtifactStore
from elmo.models.intent_model import MODEL_KIND
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.feedback.test_corrections_on_kafka import _delete, _index
from tests.integration.kafka_io import ServiceProcess, consume, end_offsets, produce, start_group_at_end
from tests.integration.models.test_hot_swap import UTTERANCES, read_outputs
from tests.unit.feedback_trainer.test_corrections import TARGET, ZORBLAX, ZORBLAX_UNSEEN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

SWAP_TARGET_S = 120.0  # from the 20th correction produced to /readyz serving the new head
RATE = 20.0  # utterances per second


class SteadyStream:
    """Utterances to elmo.utterances at a steady rate from a thread, until stopped; remembers when each was sent."""

    def __init__(self, bootstrap: str, prefix: str, rate: float) -> None:
        self.bootstrap, self.prefix, self.rate = bootstrap, prefix, rate
        self.sent_at: dict[str, float] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            started, i = time.monotonic(), 0
            while not self._stop.is_set():
                delay = started + i / self.rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                conversation = f"{self.prefix}-{i % 8}"
                event = {"event_id": uuid.uuid4().hex, "conversation_id": conversation, "user_id": "u-" + conversation,
                         "channel": "web", "text": UTTERANCES[i % len(UTTERANCES)], "source": "text"}  # fmt: skip
                producer.send(topics.UTTERANCES.name, key=conversation.encode(), value=json.dumps(event).encode()).get(timeout=10)
                self.sent_at[event["event_id"]] = time.monotonic()
                i += 1
            producer.flush()
            producer.close()
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error

    def start(self) -> SteadyStream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def check(self) -> None:
        assert self.error is None, f"the stream failed: {self.error!r}"


def test_twenty_corrections_reach_the_running_nlu_without_losing_a_message(
    connections: ConnectionSettings, trained_model_store: ArtifactStore, tmp_path: Path
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    root = tmp_path / "store"
    shutil.copytree(trained_model_store.root, root, ignore=shutil.ignore_patterns(".lock", "*.replay.lock"))
    store = ArtifactStore(root)
    original = store.current_version(MODEL_KIND)

    updates = Topic(f"test.{run}.model-updates", "model updates of one test run", partitions=1, retention_ms=-1,
                    cleanup_policy=CleanupPolicy.COMPACT)  # fmt: skip
    create_topics(bootstrap, (topics.UTTERANCES, topics.UNDERSTANDINGS, topics.FEEDBACK, updates,
                              topics.dead_letter_topic("nlu"), topics.dead_letter_topic("feedback-trainer")))  # fmt: skip
    nlu_group, trainer_group = f"test-nlu-learn-{run}", f"test-feedback-trainer-learn-{run}"
    start_group_at_end(bootstrap, topics.UTTERANCES.name, nlu_group)
    start_group_at_end(bootstrap, topics.FEEDBACK.name, trainer_group)
    prefix = f"test:learning:{run}"
    shared = {"ELMO_MODEL_STORE": str(root), "ELMO_MODEL_UPDATES_TOPIC": updates.name}
    nlu = ServiceProcess("services.nlu", nlu_group, shared)
    trainer = ServiceProcess("services.feedback_trainer", trainer_group, {
        **shared, "ELMO_LEARNING_KEY_PREFIX": prefix, "ELMO_INTERACTIONS_KEY_PREFIX": f"{prefix}:interactions",
        "ELMO_TRAINER_CORRECTIONS_BATCH": "20", "ELMO_TRAINER_REFIT": "false", "ELMO_MODEL_THREADS": "1",
    })  # fmt: skip
    conversations = f"learn-{run}"  # every conversation id of this run starts with it
    replies = [Reply(conversation_id=f"{conversations}-r{n}", user_id=f"u-{run}-{n}", channel="web", text="Which one?",
                     strategy="clarify", variant="clarify:0", intent="out_of_scope", in_reply_to_text=text)
               for n, text in enumerate(ZORBLAX)]  # fmt: skip
    corrections = [
        json.loads(Feedback(conversation_id=r.conversation_id, user_id=f"agent-{run}-{n}", channel="web",
                            kind=FeedbackKind.INTENT_CORRECTED, reply_event_id=r.event_id, corrected_label=TARGET).model_dump_json())
        for n, r in enumerate(replies)
    ]  # fmt: skip
    probe_text = ZORBLAX_UNSEEN[0]  # never among the corrections
    before = end_offsets(bootstrap, topics.UNDERSTANDINGS.name)
    stream = SteadyStream(bootstrap, f"{conversations}-s", RATE)
    probes: dict[str, str] = {}  # event id -> "before" | "after"

    def probe(when: str) -> None:
        conversation = f"{conversations}-p-{when}"
        event = utterance(conversation, probe_text)
        probes[event["event_id"]] = when
        produce(bootstrap, topics.UTTERANCES.name, [event])

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # both load the sentence encoder: start them side by side
            for future in [pool.submit(nlu.start), pool.submit(trainer.start)]:
                future.result()
        ready_s = time.monotonic() - started
        assert nlu.readiness()[1]["model_version"] == original
        stream.start()
        probe("before")
        asyncio.run(_index(connections.redis_url, prefix, replies))
        time.sleep(2)  # traffic flows with the old head first
        produce(bootstrap, topics.FEEDBACK.name, corrections)
        corrected, corrected_wall = time.monotonic(), time.time()  # the 20th correction is on the topic
        serving = original
        while serving == original and time.monotonic() - corrected < SWAP_TARGET_S:
            time.sleep(0.05)
            serving = nlu.readiness()[1].get("model_version", original)
        swapped = time.monotonic()
        swap_s = swapped - corrected
        assert serving != original, f"/readyz of the running nlu still shows {original} {SWAP_TARGET_S:.0f} s after the 20th correction"
        probe("after")
        time.sleep(3)  # traffic flows with the new head
        stream.stop()
        stream.check()
        expected = len(stream.sent_at) + len(probes)
        outputs = read_outputs(bootstrap, before, conversations, expected=expected, timeout_s=60)
        announced = consume(bootstrap, updates.name, expected=1, timeout_s=10, settle_s=0.5)
    finally:
        stream.stop()
        nlu.stop()
        trainer.stop()
        asyncio.run(_delete(connections.redis_url, prefix))

    # Promoted in the registry and announced on the topic: exactly the version the nlu serves.
    assert len(announced) == 1, [r.value for r in announced]
    update = ModelUpdate.model_validate_json(announced[0].value)
    assert (update.model_kind, update.action, update.parent_version, update.version) == (MODEL_KIND, "promote", original, serving)
    assert store.current_version(MODEL_KIND) == serving
    meta = store.get(MODEL_KIND, serving).meta
    assert meta["status"] == "promoted" and meta["training_data"]["corrections"] == 20 and meta["training_data"]["users"] == 20

    # Every input exactly one output.
    values = [json.loads(r.value) for r in outputs]
    by_input: dict[str, list[dict]] = defaultdict(list)
    for value in values:
        by_input[value["parent_event_id"]].append(value)
    assert set(by_input) == set(stream.sent_at) | set(probes), "lost or unknown outputs"
    doubles = {k: len(v) for k, v in by_input.items() if len(v) != 1}
    assert not doubles and len(values) == expected, f"{len(doubles)} inputs with more than one output"

    # Per partition, in offset order: the old head, then the new one, never back.
    per_partition = defaultdict(list)
    for record, value in zip(outputs, values, strict=True):
        per_partition[record.partition].append((record.offset, value["nlu_model_version"]))
    for versions in per_partition.values():
        sequence = [v for _, v in sorted(versions)]
        switch = sequence.index(serving) if serving in sequence else len(sequence)
        assert set(sequence[:switch]) <= {original} and set(sequence[switch:]) <= {serving}, sequence

    # Sent after /readyz showed the swap: the new head, and the taught word is understood.
    late = [event_id for event_id, sent in stream.sent_at.items() if sent > swapped]
    assert late and all(by_input[e][0]["nlu_model_version"] == serving for e in late)
    old = sum(v[0]["nlu_model_version"] == original for v in by_input.values())
    probe_out = {when: by_input[e][0] for e, when in probes.items()}
    assert probe_out["before"]["nlu_model_version"] == original and probe_out["after"]["nlu_model_version"] == serving
    assert probe_out["after"]["intent"]["name"] == TARGET, probe_out["after"]["intent"]
    announced_s = announced[0].timestamp / 1000 - corrected_wall
    print(
        f"\nservices ready {ready_s:.1f} s; 20th correction -> announced {announced_s:.1f} s -> running nlu serves the new head "
        f"{swap_s:.1f} s "
        f"(target {SWAP_TARGET_S:.0f} s); {len(stream.sent_at)} streamed at {RATE:.0f}/s: {old} old head, "
        f"{len(by_input) - old} new; {probe_text!r}: {probe_out['before']['intent']['name']} before, "
        f"{probe_out['after']['intent']['name']} ({probe_out['after']['intent']['confidence']:.2f}) after"
    )


def utterance(conversation: str, text: str) -> dict:
    return {"event_id": uuid.uuid4().hex, "conversation_id": conversation, "user_id": "u-" + conversation,
            "channel": "web", "text": text, "source": "text"}  # fmt: skip
