"""Who sent a webhook: HMAC-SHA256 signatures over the raw body (Meta, generic) and Telegram's secret token.

Each check returns None when the request may pass, or the reason it may not: `not_configured`
(the endpoint's secret is empty, so nothing passes), `unsigned` (no signature header: 401) or
`bad_signature` (a signature that does not match: 403). Comparisons are constant-time and over
bytes, so a header with characters outside ASCII is simply wrong, not an exception.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value a sender puts on `body`: `sha256=<hex HMAC-SHA256(secret, body)>`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_hmac(secret: str, body: bytes, header: str | None) -> str | None:
    if not secret:
        return "not_configured"
    if header is None or not header.strip():
        return "unsigned"
    expected = sign(secret, body).encode()
    given = header.strip().encode("utf-8", "replace")
    # Hex is case-insensitive; the prefix is compared as part of the value.
    return None if hmac.compare_digest(expected, given.lower()) else "bad_signature"


def check_secret_token(secret: str, header: str | None) -> str | None:
    if not secret:
        return "not_configured"
    if header is None or not header:
        return "unsigned"
    return None if hmac.compare_digest(secret.encode(), header.encode("utf-8", "replace")) else "bad_signature"


def check_verify_token(expected: str, mode: str | None, token: str | None) -> bool:
    """The GET subscription handshake of Meta's webhooks: subscribe with the right verify token."""
    if not expected or mode != "subscribe" or token is None:
        return False
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))
