"""Redis stopped under load: every turn is answered once when it is back, nothing dead-lettered for
the outage. The chain (tests/chaos/conftest.py) runs on a Redis of the tests' own (append-only file),
which this test stops and starts on the same port; Kafka is the project's broker. Outsider test: turns on elmo.inbound,
replies and dead letters read back."""

from __future__ import annotations

import json
import threading
import time

import pytest

from elmo.contracts import topics
from tests.chaos.traffic import (
    TopicWatcher,
    customer_turn,
    dead_letter_topics,
    producer,
    report,
    run_id,
    send_paced,
    wait_for_replies,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

def run_redis_outage(chain, seconds: float, rate: float, outage_s: float) -> None:
    run = run_id()
    bootstrap = chain.bootstrap
    watcher = TopicWatcher(bootstrap, [topics.REPLIES.name, *dead_letter_topics()])
    watcher.start()
    turns = [customer_turn(run, i) for i in range(int(seconds * rate))]
    items = [(topics.INBOUND.name, t["conversation_id"].encode(), json.dumps(t).encode()) for t in turns]
    timeline: dict[str, float] = {}

    def outage() -> None:
        time.sleep(seconds / 3)
        chain.redis.stop()
        timeline["down"] = time.monotonic()
        time.sleep(outage_s)
        chain.redis.start()
        timeline["up"] = time.monotonic()

    breaker = threading.Thread(target=outage)
    breaker.start()
    try:
        send_paced(producer(bootstrap), items, rate)
    finally:
        breaker.join()
    outcome = wait_for_replies(watcher, [t["event_id"] for t in turns], timeout_s=120)
    during = turns[int(seconds / 3 * rate) : int((seconds / 3 + outage_s) * rate)]
    letters = [letter for name in dead_letter_topics() for letter in watcher.values(name) if run in letter.get("original_value", "")]
    watcher.stop()

    report(
        f"Redis stopped for {outage_s:g} s under {rate:g} turns/s",
        **outcome.counts(),
        turns_sent_during_outage=len(during),
        dead_lettered=len(letters),
        outage_s=round(timeline["up"] - timeline["down"], 1),
    )
    outcome.assert_every_turn_answered_once()
    assert letters == [], f"the outage was dead-lettered: {[(le['service'], le['error_class']) for le in letters][:5]}"


def test_a_redis_outage_is_waited_out_not_dead_lettered(chaos_chain):
    run_redis_outage(chaos_chain, seconds=18, rate=8, outage_s=5)


@pytest.mark.chaos_full
def test_redis_stopped_for_10_s_under_25_turns_per_second(chaos_chain):
    run_redis_outage(chaos_chain, seconds=45, rate=25, outage_s=10)
