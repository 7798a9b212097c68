"""The issue's two records, published with kcat as anyone could: a 5,000-digit integer and a
100,000-deep array on elmo.inbound. Both are dead-lettered within seconds, and a customer's
message on every partition of the topic is still answered."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import pytest

from elmo.contracts import topics
from elmo.contracts.topics import dead_letter_topic
from tests.chaos.traffic import TopicWatcher, report, run_id, wait_for_replies

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def kcat_produce(bootstrap: str, topic: str, value: bytes, partition: int, key: str) -> None:
    subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(partition), "-k", key, "-X", "message.max.bytes=2000000"],
        input=value,
        check=True,
        timeout=30,
    )


def test_kcat_poison_is_dead_lettered_and_every_partition_still_answers(chaos_chain):
    bootstrap, run = chaos_chain.bootstrap, run_id()
    watcher = TopicWatcher(bootstrap, [topics.REPLIES.name, dead_letter_topic("intake").name])
    watcher.start()
    huge_integer = b'{"conversation_id": "kcat-' + run.encode() + b'", "n": ' + b"1" * 5000 + b"}"
    deep_array = b"[" * 100_000 + b"]" * 100_000
    sent_poison = time.monotonic()
    kcat_produce(bootstrap, topics.INBOUND.name, huge_integer, partition=0, key=f"kcat-{run}-a")
    kcat_produce(bootstrap, topics.INBOUND.name, deep_array, partition=1, key=f"kcat-{run}-b")

    turns = []
    for partition in range(topics.INBOUND.partitions):
        turn = {
            "event_id": f"kcat-{run}-{partition}",
            "conversation_id": f"kcat-{run}-{partition}",
            "user_id": f"kcat-{run}-{partition}",
            "channel": "web",
            "text": "hiii do u ship to graz?",
            "created_at": datetime.now(UTC).isoformat(),
        }
        kcat_produce(bootstrap, topics.INBOUND.name, json.dumps(turn).encode(), partition, turn["conversation_id"])
        turns.append(turn["event_id"])

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        letters = [
            letter
            for letter in watcher.values(dead_letter_topic("intake").name)
            if letter["original_value"].startswith('{"conversation_id": "kcat-' + run) or letter["original_value"].startswith("[[[[")
        ]
        if len(letters) >= 2:
            break
        time.sleep(0.2)
    lettered_after = time.monotonic() - sent_poison
    outcome = wait_for_replies(watcher, turns, timeout_s=60)
    watcher.stop()

    report(
        "kcat poison on elmo.inbound",
        dead_lettered=len(letters),
        dead_lettered_within_s=round(lettered_after, 1),
        partitions_answered=outcome.answered_once,
        of=len(turns),
    )
    assert len(letters) >= 2 and {letter["reason"] for letter in letters} == {"malformed"}
    assert any("4300 digits" in letter["error_message"] for letter in letters)
    assert any("nested deeper" in letter["error_message"] for letter in letters)
    outcome.assert_every_turn_answered_once()
