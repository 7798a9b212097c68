"""`elmo dlq` without a broker: letters made by the runtime's own `dead_letter_record`, read back,
selected, formatted, and turned into the records a replay would send."""

from __future__ import annotations

import json

import pytest

from elmo.contracts.codec import InvalidEvent, MalformedRecord
from elmo.runtime.dead_letters import MAX_ORIGINAL_VALUE_BYTES, dead_letter_record
from elmo.runtime.records import ConsumedRecord
from elmo.tools.dead_letter_admin import (
    REPLAYED_FROM_HEADER,
    DeadLetterError,
    LetterRecord,
    as_dict,
    check_reason,
    dead_letter_topic_of,
    find_one,
    list_line,
    parse_record,
    plan_replay,
    safe_text,
    select,
    show_lines,
    summary_line,
)

DLQ = "elmo.dlq.intake"


def letter(
    value: bytes, *, partition: int = 0, offset: int = 0, reason: str = "malformed", error: Exception | None = None,
    key: bytes | None = b"conv-1", event_id: str | None = None, at_ms: int = 1_000,
) -> LetterRecord:  # fmt: skip
    """A dead letter as the runtime writes it for `value`, read back from partition:offset of the DLQ."""
    original = ConsumedRecord(topic="elmo.inbound", partition=4, offset=100 + offset, key=key, value=value)
    out = dead_letter_record(
        service="intake", dead_letter_topic=DLQ, record=original, reason=reason,
        error=error or MalformedRecord("value is not JSON: Expecting ',' delimiter"), event_id=event_id,
    )  # fmt: skip
    headers = [(name, text.encode()) for name, text in out.headers.items()]
    return parse_record(DLQ, partition, offset, at_ms, out.key, out.value, headers)


def test_unknown_service_names_the_valid_ones() -> None:
    assert dead_letter_topic_of("feedback-trainer") == "elmo.dlq.feedback-trainer"
    with pytest.raises(DeadLetterError, match="intake, asr, nlu") as raised:
        dead_letter_topic_of("nope")
    assert "delivery" in str(raised.value)
    with pytest.raises(DeadLetterError, match="edge services, ingest"):
        dead_letter_topic_of("ingest")
    with pytest.raises(DeadLetterError, match="too_large"):
        check_reason("bad")
    assert check_reason("invalid") == "invalid" and check_reason(None) is None


def test_text_original_replays_byte_for_byte_with_its_key_to_its_topic() -> None:
    value = '{"not json, café'.encode()
    (replay,), skipped = plan_replay([letter(value, partition=2, offset=7)])
    assert skipped == []
    assert (replay.topic, replay.key, replay.value) == ("elmo.inbound", b"conv-1", value)
    assert replay.headers == [(REPLAYED_FROM_HEADER, b"elmo.dlq.intake/2:7")]


def test_binary_original_is_base64_decoded_for_replay_and_escaped_for_display() -> None:
    value = b"\xff\xfe\x1b[31m\x00binary"
    record = letter(value)
    assert record.letter is not None and record.letter.original_value_encoding == "base64"
    (replay,), _ = plan_replay([record])
    assert replay.value == value
    shown = "\n".join(show_lines(record))
    assert "\x1b" not in shown and "\x00" not in shown
    assert "\\x1b[31m" in shown and "base64, 14 bytes" in shown


def test_truncated_original_is_refused_and_counted() -> None:
    whole = letter(b'{"text": "fine"}', offset=1)
    cut = letter(b"x" * (MAX_ORIGINAL_VALUE_BYTES + 10), reason="too_large", offset=2)
    assert cut.letter is not None and cut.letter.original_value_truncated
    replays, skipped = plan_replay([whole, cut])
    assert [r.source for r in replays] == [whole]
    assert [s.source for s in skipped] == [cut]
    assert "truncated" in skipped[0].why and str(MAX_ORIGINAL_VALUE_BYTES + 10) in skipped[0].why
    assert "TRUNCATED" in "\n".join(show_lines(cut))


def test_a_body_that_is_not_a_dead_letter_is_listed_not_replayed() -> None:
    junk = parse_record(DLQ, 3, 9, 5, b"k", b"{oops", [])
    assert junk.letter is None and junk.unreadable
    assert "unreadable" in list_line(junk)
    _, (skipped,) = plan_replay([junk])
    assert "not a dead letter" in skipped.why


def test_a_letter_whose_value_does_not_match_its_size_is_refused() -> None:
    record = letter(b'{"a": 1}')
    assert record.letter is not None
    record.letter.original_value_bytes = 99
    _, (skipped,) = plan_replay([record])
    assert "99" in skipped.why
    record.letter.original_value_encoding, record.letter.original_value = "base64", "***"
    _, (skipped,) = plan_replay([record])
    assert "base64" in skipped.why


def test_an_escaped_nul_in_the_original_does_not_make_the_letter_unreadable() -> None:
    value = b'{"conversation_id": "c", "user_id": "p\\u0000", "channel": "web", "text": "x"}'
    record = letter(value, reason="invalid", error=InvalidEvent("value contains a NUL character"))
    assert record.letter is not None
    assert plan_replay([record])[0][0].value == value


def test_selectors_partition_offset_offset_and_event_ids() -> None:
    first = letter(b"a", partition=0, offset=5, at_ms=1)
    second = letter(b"b", partition=1, offset=5, at_ms=2)
    third = letter(b"c", partition=1, offset=6, event_id="evt-42", reason="invalid", at_ms=3)
    records = [third, first, second]
    assert find_one(records, "1:5") is second
    assert find_one(records, "6") is third
    assert find_one(records, "evt-42") is third
    assert third.letter is not None and find_one(records, third.letter.event_id) is third
    with pytest.raises(DeadLetterError, match="0:5, 1:5"):
        find_one(records, "5")
    with pytest.raises(DeadLetterError, match="no dead letter"):
        find_one(records, "2:5")
    assert select(records, every=True) == [first, second, third]
    assert select(records, every=True, reason="invalid") == [third]
    assert select(records, every=True, newest=2) == [second, third]
    assert select(records, ["1:6", "0:5", "6"]) == [first, third]


def test_list_line_json_and_summary() -> None:
    long_error = MalformedRecord("value is not JSON: " + "y" * 200)
    record = letter(b'{"not json', partition=2, offset=11, error=long_error, event_id="evt-1")
    line = list_line(record)
    for part in ("2:11", "malformed", "elmo.inbound 4:111", "evt-1", "value is not JSON: yyy"):
        assert part in line
    assert "y" * 100 not in line and line.endswith("…")
    row = json.loads(json.dumps(as_dict(record)))
    assert row["partition"] == 2 and row["offset"] == 11 and row["key"] == "conv-1"
    assert row["headers"]["elmo.dlq.reason"] == "malformed"
    assert row["dead_letter"]["original_value"] == '{"not json'
    others = [letter(b"x", offset=1), letter(b"{}", offset=2, reason="invalid"), parse_record(DLQ, 0, 3, 0, None, b"", [])]
    assert summary_line([record, *others]) == "4 dead letter(s): 2 malformed, 1 invalid, 1 unreadable"


def test_show_pretty_prints_a_json_original_and_escapes_terminal_controls() -> None:
    value = json.dumps({"conversation_id": "c-1", "text": "hi\u202e\x1b]0;owned\x07"}).encode()
    record = letter(value, reason="invalid", error=InvalidEvent("not a valid InboundMessage: user_id: Field required"))
    shown = "\n".join(show_lines(record))
    assert '    {\n      "conversation_id": "c-1",' in shown
    assert "\x1b" not in shown and "\u202e" not in shown and "\x07" not in shown
    assert "not a valid InboundMessage: user_id: Field required" in shown
    assert "elmo.dlq.exception.class: elmo.contracts.codec.InvalidEvent" in shown
    assert safe_text("tab\tand\nnewline\r") == "tab\tand\nnewline\\r"
