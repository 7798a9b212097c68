"""`elmo dlq` from outside, on the real broker and Redis, with intake running as a process: bad
records published to elmo.inbound are listed from elmo.dlq.intake with their reasons, and a
record intake refused (too large for its limit) is replayed once the limit is raised: its original
reaches elmo.inbound byte for byte and intake's utterance appears once, however often it is replayed."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from elmo.contracts import topics
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.dead_letter_admin import REPLAYED_FROM_HEADER
from tests.integration.kafka_io import ServiceProcess, elmo_cli, end_offsets, inbound, produce, read_from, start_group_at_end

pytestmark = pytest.mark.integration

DLQ = topics.dead_letter_topic("intake").name
# Small enough that a valid message of 1,500 characters is dead-lettered as too_large.
STRICT = {"ELMO_MAX_RECORD_BYTES": "1024"}


@pytest.fixture
def intake_group(connections: ConnectionSettings) -> str:
    group = f"test-dlq-intake-{uuid.uuid4().hex[:8]}"
    start_group_at_end(connections.kafka_bootstrap_servers, topics.INBOUND.name, group)
    return group


@pytest.fixture
def strict_intake(intake_group: str) -> Iterator[ServiceProcess]:
    service = ServiceProcess("services.intake", intake_group, dict(STRICT))
    service.start()
    yield service
    service.stop()


def elmo_dlq(connections: ConnectionSettings, *args: str) -> subprocess.CompletedProcess:
    return elmo_cli(connections.kafka_bootstrap_servers, "dlq", *args)


def listed(connections: ConnectionSettings, keys: set[str], *args: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in elmo_dlq(connections, "list", "intake", "--json", *args).stdout.splitlines()]
    return {row["key"]: row for row in rows if row["key"] in keys}


def keyed(*keys: str):  # noqa: ANN201 - a predicate over kafka-python records
    wanted = {key.encode() for key in keys}
    return lambda record: record.key in wanted


def test_list_shows_each_bad_record_with_its_reason_and_replay_refuses_a_truncated_one(
    strict_intake: ServiceProcess, connections: ConnectionSettings
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    broken, invalid, huge = f"dlq-broken-{run}", f"dlq-invalid-{run}", f"dlq-huge-{run}"
    before = end_offsets(bootstrap, DLQ)
    produce(bootstrap, topics.INBOUND.name, [b'{"not json'], key=broken.encode())
    produce(bootstrap, topics.INBOUND.name, [{"event_id": f"e-{run}", "conversation_id": invalid, "user_id": "u", "channel": "web"}])
    produce(bootstrap, topics.INBOUND.name, [b"x" * 300_000], key=huge.encode())
    assert len(read_from(bootstrap, before, keyed(broken, invalid, huge), expected=3, timeout_s=20)) == 3

    rows = listed(connections, {broken, invalid, huge})
    assert {key: row["dead_letter"]["reason"] for key, row in rows.items()} == {broken: "malformed", invalid: "invalid", huge: "too_large"}
    assert rows[broken]["dead_letter"]["original_value"] == '{"not json'
    assert "text" in rows[invalid]["dead_letter"]["error_message"]
    assert rows[huge]["dead_letter"]["original_value_truncated"] is True
    assert set(listed(connections, {broken, invalid, huge}, "--reason", "invalid")) == {invalid}

    position = f"{rows[broken]['partition']}:{rows[broken]['offset']}"
    shown = elmo_dlq(connections, "show", "intake", position).stdout
    assert f"dead letter {DLQ} {position}" in shown and '{"not json' in shown and "reason:         malformed" in shown

    inbound_before = end_offsets(bootstrap, topics.INBOUND.name)
    truncated = f"{rows[huge]['partition']}:{rows[huge]['offset']}"
    done = elmo_dlq(connections, "replay", "intake", "--offset", truncated)
    assert "replayed 0, skipped 1 of 1 selected" in done.stdout
    assert f"skipped {truncated}: original value truncated" in done.stderr
    assert read_from(bootstrap, inbound_before, keyed(huge), expected=1, timeout_s=2) == []


def test_replay_after_the_fix_reaches_the_topic_once_and_intake_answers_once(
    strict_intake: ServiceProcess, intake_group: str, connections: ConnectionSettings
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    conversation = f"dlq-replay-{uuid.uuid4().hex[:8]}"
    message = inbound(uuid.uuid4().hex, conversation, "please check my order " + "o" * 1500)
    dlq_before, utterances_before = end_offsets(bootstrap, DLQ), end_offsets(bootstrap, topics.UTTERANCES.name)
    produce(bootstrap, topics.INBOUND.name, [message])
    (letter,) = read_from(bootstrap, dlq_before, keyed(conversation), expected=1, timeout_s=20)
    original = json.loads(letter.value)["original_value"].encode()
    assert json.loads(letter.value)["reason"] == "too_large"
    assert read_from(bootstrap, utterances_before, keyed(conversation), expected=1, timeout_s=1) == [], "another intake is running"

    # The fix: intake with its default limit, in the same consumer group (past the refused record).
    strict_intake.stop()
    fixed = ServiceProcess("services.intake", intake_group, {})
    fixed.start()
    try:
        inbound_before = end_offsets(bootstrap, topics.INBOUND.name)
        position = f"{letter.partition}:{letter.offset}"
        done = elmo_dlq(connections, "replay", "intake", "--offset", position)
        assert f"replayed {position} -> elmo.inbound (key {conversation}" in done.stdout
        assert "replayed 1, skipped 0 of 1 selected" in done.stdout

        (replayed,) = read_from(bootstrap, inbound_before, keyed(conversation), expected=1, timeout_s=10)
        assert replayed.value == original and json.loads(original)["event_id"] == message["event_id"]
        assert dict(replayed.headers)[REPLAYED_FROM_HEADER] == f"{DLQ}/{position}".encode()
        (utterance,) = read_from(bootstrap, utterances_before, keyed(conversation), expected=1, timeout_s=15)
        assert json.loads(utterance.value)["origin_event_id"] == message["event_id"]

        # Again: the original reaches the topic a second time, and intake skips it as handled.
        elmo_dlq(connections, "replay", "intake", "--offset", position)
        deadline = time.monotonic() + 15
        while fixed.metric("elmo_messages_duplicate_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fixed.metric("elmo_messages_duplicate_total") >= 1
        assert len(read_from(bootstrap, inbound_before, keyed(conversation), expected=3, timeout_s=2)) == 2
        assert len(read_from(bootstrap, utterances_before, keyed(conversation), expected=2, timeout_s=2)) == 1
    finally:
        fixed.stop()
