"""Dead-letter records: the original value kept for replay, the failure recorded for people.

Headers follow the Kafka Connect convention (original topic, partition, offset, exception class
and message) so generic tooling can read them; the body is a `DeadLetter` event with the same facts.
"""

from __future__ import annotations

import base64

from elmo.contracts.codec import encode
from elmo.contracts.events import DeadLetter
from elmo.runtime.records import ConsumedRecord, OutgoingRecord

MAX_ERROR_MESSAGE_CHARS = 2000
# A dead letter keeps at most this much of the original value, so it can never be too large to
# produce (Kafka's default limit is 1 MiB); `original_value_truncated` says when it was cut.
MAX_ORIGINAL_VALUE_BYTES = 256 * 1024
# The body as a whole stays under this even when JSON escaping inflates the kept value (a control
# character becomes six bytes): the kept part is halved until it fits.
MAX_DEAD_LETTER_BYTES = 512 * 1024
MAX_KEY_BYTES = 1024


def _kept_value(value: bytes, budget: int) -> tuple[str, str]:
    """(text, encoding) of at most `budget` bytes of `value`: UTF-8 where it is text, else base64."""
    kept = value[:budget]
    try:
        return value.decode("utf-8") if len(value) <= budget else kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as error:
        # Cut inside a character: the value is text up to the cut, so drop the partial character.
        if len(value) > budget and error.start >= len(kept) - 3:
            return kept[: error.start].decode("utf-8"), "utf-8"
        return base64.b64encode(kept).decode(), "base64"


def dead_letter_record(
    *,
    service: str,
    dead_letter_topic: str,
    record: ConsumedRecord,
    reason: str,
    error: BaseException,
    attempts: int = 1,
    event_id: str | None = None,
) -> OutgoingRecord:
    value = record.value or b""
    message = str(error)[:MAX_ERROR_MESSAGE_CHARS] or type(error).__name__
    key = record.key[:MAX_KEY_BYTES] if record.key is not None else None
    budget = MAX_ORIGINAL_VALUE_BYTES
    while True:
        original_value, encoding = _kept_value(value, budget)
        letter = DeadLetter(
            service=service,
            reason=reason,
            error_class=f"{type(error).__module__}.{type(error).__qualname__}",
            error_message=message,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=key.decode("utf-8", "replace") if key is not None else None,
            original_value=original_value,
            original_value_encoding=encoding,
            original_value_bytes=len(value),
            original_value_truncated=len(value) > budget,
            original_event_id=event_id[:200] if event_id else None,
            attempts=attempts,
        )
        body = encode(letter)
        if len(body) <= MAX_DEAD_LETTER_BYTES or budget == 0:
            break
        budget //= 2
    headers = {
        "elmo.dlq.original.topic": record.topic,
        "elmo.dlq.original.partition": str(record.partition),
        "elmo.dlq.original.offset": str(record.offset),
        "elmo.dlq.exception.class": letter.error_class,
        "elmo.dlq.exception.message": message[:500],
        "elmo.dlq.reason": reason,
        "elmo.dlq.service": service,
        "elmo.dlq.attempts": str(attempts),
    }
    if letter.original_value_truncated:
        headers["elmo.dlq.original.truncated"] = "true"
    return OutgoingRecord(topic=dead_letter_topic, key=key, value=body, headers=headers)
