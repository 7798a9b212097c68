"""Tracking links: the URL a recommendation carries, which records a click before redirecting.

A link is stateless and signed: `<base>/r/<token>` where the token holds who was shown what
(tracking id, item, user, conversation, channel) as a compact JSON array and an HMAC over it, so the
redirect endpoint needs no lookup and cannot be used to forge clicks. It redirects to the item's
product page (`LinkSettings.product_url`), never to a URL taken from the link, so it is no open
redirect either, and links stay short enough for a chat message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from typing import ClassVar

from pydantic import BaseModel, Field

from elmo.contracts.events import ID_PATTERN

SIGNATURE_BYTES = 16


class TrackedLink(BaseModel):
    tracking_id: str = Field(pattern=ID_PATTERN)
    item_id: str
    user_id: str = Field(pattern=ID_PATTERN)
    conversation_id: str = Field(pattern=ID_PATTERN)
    channel: str

    FIELDS: ClassVar[tuple[str, ...]] = ("tracking_id", "item_id", "user_id", "conversation_id", "channel")


class InvalidTrackingToken(ValueError):
    """The token is malformed or its signature does not match."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def make_token(link: TrackedLink, secret: str) -> str:
    payload = json.dumps([getattr(link, name) for name in TrackedLink.FIELDS], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def tracking_url(base_url: str, link: TrackedLink, secret: str) -> str:
    return f"{base_url.rstrip('/')}/r/{make_token(link, secret)}"


def read_token(token: str, secret: str) -> TrackedLink:
    """The link a token stands for; `InvalidTrackingToken` unless it is well formed and signed."""
    try:
        payload_text, signature_text = token.split(".", 1)
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except ValueError as error:
        raise InvalidTrackingToken("malformed tracking token") from error
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        raise InvalidTrackingToken("tracking token signature does not match")
    try:
        values = json.loads(payload)
        if not isinstance(values, list) or len(values) != len(TrackedLink.FIELDS):
            raise ValueError("expected a list of the link's fields")
        return TrackedLink(**dict(zip(TrackedLink.FIELDS, values, strict=True)))
    except ValueError as error:
        raise InvalidTrackingToken(f"tracking token payload is invalid: {error}") from error
