"""The runtime's guarantees on the real broker and Redis, through the test-only echo service."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict

import pytest

from elmo.contracts.topics import dead_letter_topic
from tests.integration.kafka_io import consume, inbound, produce

pytestmark = pytest.mark.integration


def values(records: list) -> list[dict]:
    return [json.loads(r.value) for r in records]


def test_every_event_gets_one_output_in_conversation_order(echo_chain, connections):
    (echo,) = echo_chain()
    echo.start()
    sent = [inbound(f"e{i}", f"c{i % 10}", f"message {i}") for i in range(300)]
    produce(connections.kafka_bootstrap_servers, echo.in_topic, sent)

    outputs = values(consume(connections.kafka_bootstrap_servers, echo.out_topic, expected=300, settle_s=1.0))

    assert len(outputs) == 300
    assert sorted(o["parent_event_id"] for o in outputs) == sorted(e["event_id"] for e in sent)
    by_conversation = defaultdict(list)
    for output in outputs:
        by_conversation[output["conversation_id"]].append(int(output["parent_event_id"][1:]))
    for conversation, order in by_conversation.items():
        assert order == sorted(order), f"conversation {conversation} out of order"
    assert all(o["origin_event_id"] == o["parent_event_id"] for o in outputs)


def test_the_same_event_delivered_twice_yields_one_output(echo_chain, connections):
    (echo,) = echo_chain()
    echo.start()
    event = inbound("dup-1", "c1", "hello")
    produce(connections.kafka_bootstrap_servers, echo.in_topic, [event, event])
    produce(connections.kafka_bootstrap_servers, echo.in_topic, [event, inbound("after", "c1", "next")])

    outputs = values(consume(connections.kafka_bootstrap_servers, echo.out_topic, expected=2, settle_s=2.0))

    assert Counter(o["parent_event_id"] for o in outputs) == {"dup-1": 1, "after": 1}
    metrics = echo.http("/metrics")[1]
    assert 'elmo_messages_duplicate_total{service="' + echo.name + '"} 2.0' in metrics


def test_bad_records_go_to_the_dead_letter_topic_and_good_ones_keep_flowing(echo_chain, connections):
    (echo,) = echo_chain()
    echo.start()
    bootstrap = connections.kafka_bootstrap_servers
    unknown_version = {**inbound("v99", "c1", "from the future"), "schema_version": 99}
    produce(bootstrap, echo.in_topic, [b"{this is not json", unknown_version, inbound("b1", "c1", "boom"), inbound("ok1", "c1", "fine")], key=b"c1")

    letters = consume(bootstrap, dead_letter_topic(echo.name).name, expected=3, timeout_s=60)
    outputs = values(consume(bootstrap, echo.out_topic, expected=1, settle_s=1.0))

    assert [o["parent_event_id"] for o in outputs] == ["ok1"]
    headers = [{k: v.decode() for k, v in letter.headers} for letter in letters]
    assert [h["elmo.dlq.reason"] for h in headers] == ["malformed", "unsupported_schema_version", "processing_failed"]
    for h in headers:
        assert h["elmo.dlq.original.topic"] == echo.in_topic
        assert h["elmo.dlq.service"] == echo.name
        assert int(h["elmo.dlq.original.offset"]) >= 0 and h["elmo.dlq.original.partition"].isdigit()
    assert headers[0]["elmo.dlq.exception.class"] == "elmo.contracts.codec.MalformedRecord"
    assert headers[2]["elmo.dlq.exception.class"] == "builtins.RuntimeError"
    assert "boom requested" in headers[2]["elmo.dlq.exception.message"]
    assert json.loads(letters[0].value)["original_value"] == "{this is not json"
    assert echo.http("/healthz")[0] == 200


def test_kill_9_mid_stream_loses_nothing_and_duplicates_are_suppressed_downstream(echo_chain, connections):
    first, second = echo_chain(hops=2, ELMO_BATCH_MAX_RECORDS="16")
    for service in (first, second):
        service.start()
    bootstrap = connections.kafka_bootstrap_servers
    total = 400
    produce(bootstrap, first.in_topic, [inbound(f"k{i}", f"c{i % 20}", "slow:0.005") for i in range(total)])

    # Let the first service get part of the way, then kill it without any chance to clean up.
    deadline = time.monotonic() + 60
    while len(consume(bootstrap, first.out_topic, expected=total, timeout_s=0.5)) < total // 4:
        assert time.monotonic() < deadline, "the first service made no progress"
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    first.start()

    final = values(consume(bootstrap, second.out_topic, expected=total, timeout_s=120, settle_s=3.0))
    middle = values(consume(bootstrap, first.out_topic, expected=total, timeout_s=10, settle_s=1.0))

    # The killed service may republish the batch it had in flight, under the same event ids...
    assert {m["parent_event_id"] for m in middle} == {f"k{i}" for i in range(total)}
    assert len({m["event_id"] for m in middle}) == total
    # ...which the next service recognises: every input has exactly one output at the end.
    assert len(final) == total
    assert sorted(f["origin_event_id"] for f in final) == sorted(f"k{i}" for i in range(total))


def test_sigterm_finishes_in_flight_work_and_commits_before_exit(echo_chain, connections):
    (echo,) = echo_chain(ELMO_BATCH_MAX_RECORDS="8", ELMO_SHUTDOWN_GRACE_S="15")
    echo.start()
    bootstrap = connections.kafka_bootstrap_servers
    total = 120
    produce(bootstrap, echo.in_topic, [inbound(f"t{i}", f"c{i % 6}", "slow:0.02") for i in range(total)])

    deadline = time.monotonic() + 60
    while len(consume(bootstrap, echo.out_topic, expected=total, timeout_s=0.5)) < 10:
        assert time.monotonic() < deadline, "the service made no progress"
    echo.process.send_signal(signal.SIGTERM)
    assert echo.process.wait(timeout=30) == 0
    partial = len(consume(bootstrap, echo.out_topic, expected=total, timeout_s=2))
    assert partial < total, "the stream finished before the signal; the test proves nothing"

    echo.start()
    outputs = values(consume(bootstrap, echo.out_topic, expected=total, timeout_s=90, settle_s=3.0))

    # Nothing lost, and nothing doubled even at the raw record level: the commit happened.
    assert len(outputs) == total
    assert Counter(o["parent_event_id"] for o in outputs) == Counter(f"t{i}" for i in range(total))


def test_health_readiness_and_metrics_endpoints(echo_chain, connections):
    (echo,) = echo_chain()
    echo.start()
    produce(connections.kafka_bootstrap_servers, echo.in_topic, [inbound("m1", "c1", "hi")])
    consume(connections.kafka_bootstrap_servers, echo.out_topic, expected=1)

    status, ready = echo.http("/readyz")
    assert status == 200 and ready["broker_reachable"] and ready["model_loaded"]
    status, live = echo.http("/healthz")
    assert status == 200 and live["consuming"]
    expected = [
        f'elmo_messages_consumed_total{{service="{echo.name}"}} 1.0',
        f'elmo_messages_produced_total{{service="{echo.name}"}} 1.0',
        f'elmo_batch_processing_seconds_count{{service="{echo.name}"}} 1.0',
        f'elmo_end_to_end_latency_seconds_count{{service="{echo.name}"}} 1.0',
    ]
    deadline = time.monotonic() + 5
    while not all(line in (text := echo.http("/metrics")[1]) for line in expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    for line in expected:
        assert line in text


def test_an_outage_rewinds_every_partition_of_the_batch_and_health_reports_no_progress(echo_chain, connections, tmp_path):
    outage = tmp_path / "redis-is-down"
    outage.touch()
    (echo,) = echo_chain(
        partitions=2,
        ECHO_OUTAGE_FILE=str(outage),
        ELMO_PROGRESS_STALL_S="2",
        ELMO_REWIND_BACKOFF_S="0.2",
        ELMO_REWIND_BACKOFF_MAX_S="0.5",
    )
    bootstrap = connections.kafka_bootstrap_servers
    total = 60
    # Both partitions hold records before the service starts, so its batches span both.
    for key in (b"left", b"right"):
        produce(bootstrap, echo.in_topic, [inbound(f"{key.decode()}-{i}", key.decode(), f"m{i}") for i in range(total // 2)], key=key)
    echo.start()

    deadline = time.monotonic() + 30
    while True:
        status, health = echo.http("/healthz")
        if status == 503:
            break
        assert time.monotonic() < deadline, f"/healthz stayed ok during the outage: {health}"
        time.sleep(0.3)
    assert health["rereads_in_a_row"] >= 2
    assert len(health["stuck_partitions"]) == 2, health  # both partitions have records waiting
    metrics = echo.http("/metrics")[1]
    assert 'elmo_partitions_stuck{service="' + echo.name + '"} 2.0' in metrics
    assert "elmo_batch_rewinds_total" in metrics

    outage.unlink()  # Redis is back
    outputs = values(consume(bootstrap, echo.out_topic, expected=total, timeout_s=60, settle_s=2.0))

    assert Counter(o["parent_event_id"] for o in outputs) == Counter(
        [f"left-{i}" for i in range(total // 2)] + [f"right-{i}" for i in range(total // 2)]
    ), "a record was skipped or doubled"
    assert consume(bootstrap, dead_letter_topic(echo.name).name, expected=1, timeout_s=2) == [], "an outage was dead-lettered"
    deadline = time.monotonic() + 10
    while echo.http("/healthz")[0] != 200:
        assert time.monotonic() < deadline, "/healthz did not recover after the outage"
        time.sleep(0.3)


def test_a_record_that_kills_the_service_is_dead_lettered_after_a_few_restarts(echo_chain, connections):
    (echo,) = echo_chain(partitions=1)
    bootstrap = connections.kafka_bootstrap_servers
    produce(bootstrap, echo.in_topic, [inbound("before", "c1", "hi"), inbound("killer", "c1", "die"), inbound("after", "c1", "still there?")], key=b"c1")
    echo.start(wait_ready=False)  # it may die before it is ever ready
    restarts, deadline = 0, time.monotonic() + 120
    letters: list = []
    while not letters:
        assert time.monotonic() < deadline, f"the killer record was never dead-lettered ({restarts} restarts)"
        if echo.process.poll() is not None:  # died: restarted, as Kubernetes or `elmo up` would
            restarts += 1
            echo.start(wait_ready=False)
        letters = consume(bootstrap, dead_letter_topic(echo.name).name, expected=1, timeout_s=0.5)

    outputs = values(consume(bootstrap, echo.out_topic, expected=2, timeout_s=30, settle_s=2.0))
    letter = json.loads(letters[0].value)
    print(f"killer dead-lettered after {restarts} restarts: {letter['error_message']}")
    assert letter["original_event_id"] == "killer" and letter["error_class"].endswith("ServiceDiedWhileHandling")
    assert Counter(o["parent_event_id"] for o in outputs) == {"before": 1, "after": 1}
    assert 2 <= restarts <= 4
    echo.wait_ready()
    assert echo.http("/healthz")[0] == 200
