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
    try:
        original_value, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original_value, encoding = base64.b64encode(value).decode(), "base64"
    message = str(error)[:MAX_ERROR_MESSAGE_CHARS] or type(error).__name__
    letter = DeadLetter(
        service=service,
        reason=reason,
        error_class=f"{type(error).__module__}.{type(error).__qualname__}",
        error_message=message,
        original_topic=record.topic,
        original_partition=record.partition,
        original_offset=record.offset,
        original_key=record.key.decode("utf-8", "replace") if record.key is not None else None,
        original_value=original_value,
        original_value_encoding=encoding,
        original_event_id=event_id,
        attempts=attempts,
    )
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
    return OutgoingRecord(topic=dead_letter_topic, key=record.key, value=encode(letter), headers=headers)
