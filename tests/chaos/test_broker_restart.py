"""The single local broker stopped and started again under customers' turns: the services reconnect
and every turn is answered once. Stops the project's broker, so it runs in `make chaos` only.
Outsider test: turns on elmo.inbound, replies read from elmo.replies."""

from __future__ import annotations

import json
import threading
import time

import pytest

from elmo.contracts import topics
from elmo.local.kafka_broker import kafka_down, kafka_up
from elmo.local.stack_settings import LocalStackSettings, find_repo_root
from tests.chaos.traffic import TopicWatcher, customer_turn, report, run_id, send_paced, wait_for_replies

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_full]


def test_the_broker_stopped_and_restarted_under_load_loses_no_turn(chaos_chain):
    from kafka import KafkaProducer

    run, rate, seconds = run_id(), 10.0, 45.0
    stack = LocalStackSettings.from_env(find_repo_root())
    watcher = TopicWatcher(chaos_chain.bootstrap, [topics.REPLIES.name])
    watcher.start()
    turns = [customer_turn(run, i) for i in range(int(rate * seconds))]
    items = [(topics.INBOUND.name, t["conversation_id"].encode(), json.dumps(t).encode()) for t in turns]
    # The customer's side waits out the outage too: sends block and retry until the broker is back.
    sender = KafkaProducer(
        bootstrap_servers=chaos_chain.bootstrap, acks="all", enable_idempotence=True, retries=1_000_000,
        max_block_ms=180_000, delivery_timeout_ms=300_000, request_timeout_ms=10_000, linger_ms=5,
    )
    timeline: dict[str, float] = {}

    def restart_broker() -> None:
        time.sleep(seconds / 3)
        timeline["stopping"] = time.monotonic()
        kafka_down(stack)
        timeline["down"] = time.monotonic()
        time.sleep(5)
        kafka_up(stack)
        timeline["up"] = time.monotonic()

    breaker = threading.Thread(target=restart_broker)
    breaker.start()
    try:
        send_paced(sender, items, rate)
    finally:
        breaker.join()
    outcome = wait_for_replies(watcher, [t["event_id"] for t in turns], timeout_s=240)
    watcher.stop()
    sender.close()
    report(
        f"single broker stopped and restarted under {rate:g} turns/s",
        **outcome.counts(),
        broker_down_s=round(timeline["up"] - timeline["down"], 1),
        stop_took_s=round(timeline["down"] - timeline["stopping"], 1),
    )
    outcome.assert_every_turn_answered_once()
