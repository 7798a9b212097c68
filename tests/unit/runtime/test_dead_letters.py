"""Dead letters keep the original value within a size budget and say when it was cut."""

import base64
import json

from elmo.runtime.dead_letters import MAX_DEAD_LETTER_BYTES, MAX_ORIGINAL_VALUE_BYTES, dead_letter_record
from elmo.runtime.records import ConsumedRecord


def letter_for(value: bytes, key: bytes | None = b"c1") -> tuple[dict, dict]:
    record = dead_letter_record(
        service="intake",
        dead_letter_topic="elmo.dlq.intake",
        record=ConsumedRecord("elmo.inbound", 3, 42, key, value),
        reason="malformed",
        error=ValueError("bad"),
    )
    assert len(record.value) <= MAX_DEAD_LETTER_BYTES
    return json.loads(record.value), record.headers


def test_a_small_value_is_kept_whole():
    body, headers = letter_for(b'{"text": "hi"}')
    assert body["original_value"] == '{"text": "hi"}'
    assert body["original_value_bytes"] == 14 and body["original_value_truncated"] is False
    assert "elmo.dlq.original.truncated" not in headers


def test_a_large_text_value_is_cut_at_the_budget_on_a_character_boundary():
    value = ("é" * 400_000).encode()  # 800,000 bytes, two per character
    body, headers = letter_for(value)
    assert body["original_value_truncated"] is True and headers["elmo.dlq.original.truncated"] == "true"
    assert body["original_value_bytes"] == len(value)
    assert body["original_value_encoding"] == "utf-8"
    kept = body["original_value"].encode()
    assert value.startswith(kept) and MAX_ORIGINAL_VALUE_BYTES - 2 <= len(kept) <= MAX_ORIGINAL_VALUE_BYTES


def test_escaping_cannot_inflate_a_dead_letter_past_its_budget():
    body, _ = letter_for(b"\x01" * 1_000_000)  # each control character is six bytes as JSON
    assert body["original_value_truncated"] is True
    assert "\x01" * 1000 in body["original_value"]


def test_binary_values_are_kept_as_base64_and_huge_keys_are_cut():
    value = bytes(range(256)) * 4000
    body, _ = letter_for(value, key=b"k" * 100_000)
    assert body["original_value_encoding"] == "base64"
    assert value.startswith(base64.b64decode(body["original_value"]))
    assert len(body["original_key"]) == 1024
