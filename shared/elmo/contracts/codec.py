"""Bytes on the wire <-> event models, with a distinct error for each way a record can be bad.

The runtime dead-letters each kind of bad record with its own reason, so an operator can tell a
producer that sends garbage from one that is a schema version ahead of this service.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class UndecodableRecord(Exception):
    """A record that cannot become an event; `reason` names the dead-letter reason."""

    reason = "invalid"


class MalformedRecord(UndecodableRecord):
    reason = "malformed"


class RecordTooLarge(UndecodableRecord):
    reason = "too_large"


class UnsupportedSchemaVersion(UndecodableRecord):
    reason = "unsupported_schema_version"


class InvalidEvent(UndecodableRecord):
    reason = "invalid"


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


# An escaped NUL (\u0000) that is not itself an escaped backslash followed by "u0000": valid JSON,
# but no text a customer or a service means, and a hazard for every store and log downstream.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def decode(raw: bytes | None, model: type[M], max_bytes: int | None = None) -> M:
    """Parse and validate one record value as `model`, or raise an `UndecodableRecord`.

    Nothing else escapes: a value that makes the parser itself fail (an integer of thousands of
    digits, nesting deeper than the recursion limit, anything unforeseen) is a malformed record,
    so one bad record can never stop a service.
    """
    if raw is None:
        raise MalformedRecord("record has no value (tombstone)")
    if max_bytes is not None and len(raw) > max_bytes:
        raise RecordTooLarge(f"value is {len(raw)} bytes, over the budget of {max_bytes} bytes")
    if b"\\u0000" in raw and _ESCAPED_NUL.search(raw):
        raise InvalidEvent("value contains a NUL character (\\u0000)")
    # Fast path: pydantic parses and validates in one pass; the slow path below runs only for a
    # record that fails, to say precisely why.
    try:
        event = model.model_validate_json(raw)
    except Exception:  # noqa: BLE001 - any failure is explained by the slow path below
        pass
    else:
        if event.schema_version in getattr(model, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1})):  # type: ignore[attr-defined]
            return event
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedRecord(f"value is not JSON: {error}") from error
    except RecursionError as error:
        raise MalformedRecord("value is nested deeper than the parser allows") from error
    except Exception as error:  # noqa: BLE001 - e.g. ValueError for an integer of over 4,300 digits
        raise MalformedRecord(f"value cannot be parsed: {type(error).__name__}: {str(error)[:200]}") from error
    if not isinstance(document, dict):
        raise MalformedRecord(f"value is JSON {type(document).__name__}, expected an object")

    supported = getattr(model, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1}))
    version = document.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidEvent(f"schema_version must be an integer, got JSON {type(version).__name__}")
    if version not in supported:
        raise UnsupportedSchemaVersion(
            f"schema_version {version} is not supported by {model.__name__} (supported: {sorted(supported)})"
        )
    try:
        return model.model_validate(document)
    except RecursionError as error:
        raise MalformedRecord("value is nested deeper than the validator allows") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or '<root>'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise InvalidEvent(f"not a valid {model.__name__}: {problems}") from error
