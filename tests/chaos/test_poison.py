"""Poison never stalls the bot: hypothesis-made bad values on every chain topic, next to customers'
turns, on the real broker and Redis with the services as processes.

Quick run in `make test` (15 s); the issue's run (50 poison/s beside 20 turns/s for 60 s) in
`make chaos`. Outsider test: records on the public topics in, replies and dead letters read back.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from elmo.contracts import topics
from tests.chaos.traffic import (
    Outcome,
    TopicWatcher,
    consumed_topics,
    customer_turn,
    dead_letter_topics,
    hypothesis_poison,
    producer,
    report,
    run_id,
    send_paced,
    wait_for_replies,
)
from tests.chaos.conftest import CHAOS_SERVICES as SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

MAX_LARGE_POISON = 6  # values near 1 MB: a few prove the budget; hundreds would only load the machine


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def poison_items(count: int) -> list[tuple[str, bytes, bytes]]:
    targets = [topic for topic, service in consumed_topics().items() if service in SERVICES]
    values, large = [], 0
    for value in hypothesis_poison(count * 2, seed=11):
        if len(value) > 100_000 and b"[[" not in value[:2] and b'{"a"' not in value[:4]:
            if large >= MAX_LARGE_POISON:
                continue
            large += 1
        values.append(value)
        if len(values) == count:
            break
    return [(targets[i % len(targets)], f"poison-{i}".encode(), value) for i, value in enumerate(values)]


def run_poison_beside_turns(chain, seconds: float, poison_rate: float, turn_rate: float) -> None:
    run = run_id()
    bootstrap, services = chain.bootstrap, chain.services
    watcher = TopicWatcher(bootstrap, [topics.REPLIES.name, *dead_letter_topics()])
    watcher.start()
    turns = [customer_turn(run, i) for i in range(int(seconds * turn_rate))]
    poison = poison_items(int(seconds * poison_rate))
    health_samples: list[int] = []
    stop_sampling = threading.Event()

    def sample_health() -> None:
        while not stop_sampling.wait(1.0):
            health_samples.extend(healthz(service.port) for service in services)

    sampler = threading.Thread(target=sample_health, daemon=True)
    sampler.start()
    good_producer, bad_producer = producer(bootstrap), producer(bootstrap)
    landed_poison: list = []
    poisoner = threading.Thread(target=lambda: landed_poison.extend(send_paced(bad_producer, poison, poison_rate)))
    started = time.monotonic()
    poisoner.start()
    send_paced(
        good_producer,
        [(topics.INBOUND.name, t["conversation_id"].encode(), json.dumps(t).encode()) for t in turns],
        turn_rate,
    )
    poisoner.join()
    sent_all = time.monotonic()
    outcome: Outcome = wait_for_replies(watcher, [t["event_id"] for t in turns], timeout_s=120)
    answered = time.monotonic()

    # Every poison record is in the dead-letter topic of the service that read it, with its reason.
    readers = consumed_topics()
    wanted = {(s.topic, s.partition, s.offset) for s in landed_poison}
    deadline = time.monotonic() + 60
    while True:
        letters = {}
        for service in {readers[s.topic] for s in landed_poison}:
            for letter in watcher.values(f"elmo.dlq.{service}"):
                letters[(letter["original_topic"], letter["original_partition"], letter["original_offset"])] = letter
        missing_letters = wanted - letters.keys()
        if not missing_letters or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lettered = time.monotonic()
    stop_sampling.set()
    sampler.join()
    final_health = {service.group: healthz(service.port) for service in services}
    watcher.stop()
    good_producer.close()
    bad_producer.close()

    reasons: dict[str, int] = {}
    for key in wanted & letters.keys():
        reasons[letters[key]["reason"]] = reasons.get(letters[key]["reason"], 0) + 1
    truncated = sum(1 for key in wanted & letters.keys() if letters[key]["original_value_truncated"])
    report(
        f"poison {poison_rate:g}/s beside {turn_rate:g} turns/s for {seconds:g} s",
        **outcome.counts(),
        poison_sent=len(landed_poison),
        poison_dead_lettered=len(wanted & letters.keys()),
        reasons=reasons,
        truncated_letters=truncated,
        last_reply_after_last_send_s=round(answered - sent_all - 2.0, 1),
        letters_complete_after_last_send_s=round(lettered - sent_all, 1),
        healthz_failures_sampled=sum(1 for s in health_samples if s != 200),
        run_s=round(sent_all - started, 1),
    )
    outcome.assert_every_turn_answered_once()
    assert not missing_letters, f"{len(missing_letters)} poison records not dead-lettered, e.g. {sorted(missing_letters)[:3]}"
    assert set(reasons) <= {"malformed", "invalid", "too_large", "unsupported_schema_version"}
    assert all(status == 200 for status in final_health.values()), final_health
    assert all(status == 200 for status in health_samples), "a service reported no progress while poison flowed"


def test_poison_on_every_chain_topic_is_dead_lettered_while_customers_are_answered(chaos_chain):
    run_poison_beside_turns(chaos_chain, seconds=15, poison_rate=30, turn_rate=5)


@pytest.mark.chaos_full
def test_poison_at_50_per_second_beside_20_turns_per_second_for_a_minute(chaos_chain):
    run_poison_beside_turns(chaos_chain, seconds=60, poison_rate=50, turn_rate=20)
