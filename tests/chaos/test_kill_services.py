"""`kill -9` of each service in turn, and of all of them at once, under customers' turns: every turn
answered exactly once. Outsider test: turns on elmo.inbound, replies read from elmo.replies."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from elmo.contracts import topics
from tests.chaos.traffic import TopicWatcher, customer_turn, producer, report, run_id, send_paced, wait_for_replies

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_full]

CONVERSATION = ("intake", "nlu", "sentiment", "recommender", "generator")


def kill_and_restart(services) -> float:
    """SIGKILL the processes, then start them again; seconds until all are ready."""
    for service in services:
        service.process.send_signal(signal.SIGKILL)
    for service in services:
        service.process.wait()
    started = time.monotonic()
    for service in services:
        service.start(timeout_s=180)
    return time.monotonic() - started


def run_under_kills(chain, rate: float, seconds: float, victims_per_round: list[list[str]]) -> None:
    run = run_id()
    by_name = {service.module.rsplit(".", 1)[-1].replace("_", "-"): service for service in chain.services}
    watcher = TopicWatcher(chain.bootstrap, [topics.REPLIES.name])
    watcher.start()
    turns = [customer_turn(run, i) for i in range(int(seconds * rate))]
    items = [(topics.INBOUND.name, t["conversation_id"].encode(), json.dumps(t).encode()) for t in turns]
    recoveries: list[tuple[str, float]] = []

    def killer() -> None:
        pause = seconds / (len(victims_per_round) + 1)
        for victims in victims_per_round:
            time.sleep(pause)
            recoveries.append(("+".join(victims), kill_and_restart([by_name[v] for v in victims])))

    chaos = threading.Thread(target=killer)
    chaos.start()
    send_paced(producer(chain.bootstrap), items, rate)
    chaos.join()
    outcome = wait_for_replies(watcher, [t["event_id"] for t in turns], timeout_s=180)
    watcher.stop()
    report(
        f"kill -9 under {rate:g} turns/s",
        **outcome.counts(),
        restarts_ready_s={name: round(s, 1) for name, s in recoveries},
    )
    outcome.assert_every_turn_answered_once()


def test_kill_9_of_each_service_in_turn_under_25_turns_per_second(chaos_chain):
    run_under_kills(chaos_chain, rate=25, seconds=60, victims_per_round=[[name] for name in CONVERSATION])


def test_kill_9_of_every_service_at_once_under_25_turns_per_second(chaos_chain):
    run_under_kills(chaos_chain, rate=25, seconds=40, victims_per_round=[list(CONVERSATION)])
