"""Bytes on the wire <-> event models, with a distinct error for each way a record can be bad.

The runtime dead-letters each kind of bad record with its own reason, so an operator can tell a
producer that sends garbage from one that is a schema version ahead of this service.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class UndecodableRecord(Exception):
    """A record that cannot become an event; `reason` names the dead-letter reason."""

    reason = "invalid"


class MalformedRecord(UndecodableRecord):
    reason = "malformed"


class UnsupportedSchemaVersion(UndecodableRecord):
    reason = "unsupported_schema_version"


class InvalidEvent(UndecodableRecord):
    reason = "invalid"


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes | None, model: type[M]) -> M:
    """Parse and validate one record value as `model`, or raise an `UndecodableRecord`."""
    if raw is None:
        raise MalformedRecord("record has no value (tombstone)")
    # Fast path: pydantic parses and validates in one pass; the slow path below runs only for a
    # record that fails, to say precisely why.
    try:
        event = model.model_validate_json(raw)
    except ValidationError:
        pass
    else:
        if event.schema_version in getattr(model, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1})):  # type: ignore[attr-defined]
            return event
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedRecord(f"value is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise MalformedRecord(f"value is JSON {type(document).__name__}, expected an object")

    supported = getattr(model, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1}))
    version = document.get("schema_version", 1)
    if version not in supported:
        raise UnsupportedSchemaVersion(
            f"schema_version {version!r} is not supported by {model.__name__} (supported: {sorted(supported)})"
        )
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or '<root>'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise InvalidEvent(f"not a valid {model.__name__}: {problems}") from error
