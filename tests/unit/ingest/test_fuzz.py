"""Fuzzing the endpoints of the OpenAPI document: no 5xx for any body or header, nothing unsigned published.

Three kinds of input: arbitrary bytes and headers on every operation (unsigned or wrongly signed),
arbitrary JSON correctly signed (so it reaches the parsers), and payloads shaped like each
platform's with arbitrary values in every field (so it reaches normalisation and media fetching).
Media requests go to an in-process transport that answers 404: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elmo.contracts import topics
from elmo.contracts.codec import decode, encode
from elmo.contracts.events import InboundMessage
from services.ingest.app import IngestService
from services.ingest.dedupe import InMemoryMessageClaims
from services.ingest.media import fetchers_from_settings
from services.ingest.publishing import InMemoryPublisher
from services.ingest.rate_limit import InMemoryFixedWindow
from services.ingest.signatures import sign
from tests.unit.ingest.conftest import (
    GENERIC_SECRET,
    META_SECRET,
    TELEGRAM_SECRET,
    WHATSAPP_SECRET,
    payload,
    test_settings,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SIGNATURE_HEADERS = ["x-hub-signature-256", "x-telegram-bot-api-secret-token", "x-elmo-signature"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=15,
)
header_values = st.binary(max_size=80).map(lambda raw: bytes(b for b in raw if 0x20 <= b != 0x7F).strip())
headers = st.dictionaries(
    st.sampled_from([*SIGNATURE_HEADERS, "content-type", "user-agent", "x-forwarded-for", "accept"]), header_values, max_size=4
)


class FuzzTarget:
    """One ingest app with in-process doubles, driven from synchronous hypothesis tests."""

    def __init__(self, tmp_path: Path) -> None:
        self.runner = asyncio.Runner()
        self.settings = test_settings(tmp_path, ingest_max_body_bytes=64 * 1024)
        self.publisher = InMemoryPublisher()
        self.media_client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(404)))
        self.service = IngestService(
            self.settings,
            publisher=self.publisher,
            claims=InMemoryMessageClaims(ttl_s=0),  # no dedupe: every example may reach publishing
            limiter=InMemoryFixedWindow(1000, 60),
            media=fetchers_from_settings(self.settings, self.media_client),
        )
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.service.app), base_url="http://ingest.test")
        self.operations = [(method.upper(), path) for path, item in self.service.app.openapi()["paths"].items() for method in item]

    def request(self, method: str, path: str, body: bytes = b"", header_items: dict[str, bytes] | None = None) -> httpx.Response:
        raw_headers = [(name.encode(), value) for name, value in (header_items or {}).items()]
        return self.runner.run(self.client.request(method, path, content=body if method == "POST" else None, headers=raw_headers))

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.run(self.media_client.aclose())
        self.runner.close()


def fill(path: str, token: str) -> str:
    return path.replace("{token}", quote(token, safe="") or "t")


def test_any_body_and_headers_on_any_operation_is_never_a_5xx_and_publishes_nothing(tmp_path):
    target = FuzzTarget(tmp_path)
    assert len(target.operations) >= 10

    @FUZZ
    @given(operation=st.sampled_from(target.operations), body=st.binary(max_size=3000), header_items=headers, token=st.text(max_size=40))
    def run(operation, body, header_items, token):
        method, path = operation
        response = target.request(method, fill(path, token), body, header_items)
        assert response.status_code < 500, (method, path, response.text)
        if method == "POST":
            assert response.status_code in (401, 403, 413), response.text
            assert response.json()["error"] in ("unsigned", "bad_signature", "too_large")
        assert target.publisher.on(topics.INBOUND) == []

    try:
        run()
    finally:
        target.close()


ENDPOINT_SIGNERS = {
    "/webhooks/meta": lambda body: {"x-hub-signature-256": sign(META_SECRET, body).encode()},
    "/webhooks/whatsapp": lambda body: {"x-hub-signature-256": sign(WHATSAPP_SECRET, body).encode()},
    "/webhooks/telegram": lambda body: {"x-telegram-bot-api-secret-token": TELEGRAM_SECRET.encode()},
    "/webhooks/generic": lambda body: {"x-elmo-signature": sign(GENERIC_SECRET, body).encode()},
}


def check_signed(target: FuzzTarget, path: str, body: bytes) -> None:
    response = target.request("POST", path, body, ENDPOINT_SIGNERS[path](body))
    assert response.status_code in (200, 400, 413, 422, 429), (path, response.status_code, response.text)
    assert isinstance(response.json(), dict)
    for event in target.publisher.on(topics.INBOUND):
        assert decode(encode(event), InboundMessage) == event  # whatever was published is a valid contract event


def test_signed_arbitrary_json_reaches_the_parsers_without_a_5xx(tmp_path):
    target = FuzzTarget(tmp_path)

    @FUZZ
    @given(path=st.sampled_from(list(ENDPOINT_SIGNERS)), document=json_values, raw=st.booleans(), junk=st.binary(max_size=200))
    def run(path, document, raw, junk):
        check_signed(target, path, junk if raw else json.dumps(document).encode())

    try:
        run()
    finally:
        target.close()


ids = st.one_of(st.text(max_size=24), st.integers(min_value=-(2**70), max_value=2**70), json_values)
leaf = json_values


def optional(**fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=fields)


messenger_payloads = st.fixed_dictionaries(
    {
        "object": st.sampled_from(["page", "instagram"]) | leaf,
        "entry": st.lists(
            optional(
                id=ids,
                time=leaf,
                messaging=st.lists(
                    optional(
                        sender=optional(id=ids),
                        recipient=optional(id=ids),
                        timestamp=st.integers() | leaf,
                        message=optional(
                            mid=ids,
                            text=st.text(max_size=5000) | leaf,
                            is_echo=leaf,
                            attachments=st.lists(
                                optional(
                                    type=st.sampled_from(["audio", "image"]) | leaf, payload=optional(url=st.text(max_size=60) | leaf)
                                ),
                                max_size=3,
                            )
                            | leaf,
                        )
                        | leaf,
                        delivery=leaf,
                        read=leaf,
                    ),
                    max_size=3,
                )
                | leaf,
            ),
            max_size=3,
        )
        | leaf,
    }
)
whatsapp_payloads = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account") | leaf,
        "entry": st.lists(
            optional(
                changes=st.lists(
                    optional(
                        field=st.just("messages") | leaf,
                        value=optional(
                            metadata=optional(phone_number_id=ids),
                            statuses=st.lists(leaf, max_size=2) | leaf,
                            messages=st.lists(
                                optional(
                                    **{"from": ids},
                                    id=ids,
                                    timestamp=st.text(max_size=12) | leaf,
                                    type=st.sampled_from(["text", "audio", "image"]) | leaf,
                                    text=optional(body=st.text(max_size=5000) | leaf) | leaf,
                                    audio=optional(id=ids, mime_type=leaf) | leaf,
                                ),
                                max_size=3,
                            )
                            | leaf,
                        )
                        | leaf,
                    ),
                    max_size=3,
                )
                | leaf
            ),
            max_size=2,
        )
        | leaf,
    }
)
telegram_payloads = optional(
    update_id=ids,
    message=optional(
        message_id=leaf,
        date=st.integers() | leaf,
        chat=optional(id=ids, type=st.sampled_from(["private", "group"]) | leaf),
        text=st.text(max_size=5000) | leaf,
        language_code=leaf,
        voice=optional(file_id=ids, mime_type=leaf, file_size=st.integers() | leaf) | leaf,
        **{"from": optional(id=ids, is_bot=leaf, language_code=leaf)},
    )
    | leaf,
    edited_message=leaf,
)
generic_payloads = optional(
    event_id=ids,
    conversation_id=ids,
    user_id=ids,
    channel=st.sampled_from(["web", "telegram"]) | leaf,
    text=leaf,
    audio=leaf,
    schema_version=leaf,
)


FIXTURES = {
    "/webhooks/meta": ["messenger_text", "instagram_text", "messenger_echo_and_receipts", "messenger_audio"],
    "/webhooks/whatsapp": ["whatsapp_text", "whatsapp_voice", "whatsapp_statuses"],
    "/webhooks/telegram": ["telegram_text", "telegram_voice", "telegram_group"],
}
REAL_PAYLOADS = [
    (path, json.loads(payload(name, MEDIA_BASE="http://127.0.0.1:9", MEDIA_ID="m-1", FILE_ID="f-1")))
    for path, names in FIXTURES.items()
    for name in names
]


def leaf_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(document, dict):
        children = [leaf_paths(value, (*prefix, key)) for key, value in document.items()]
    elif isinstance(document, list):
        children = [leaf_paths(value, (*prefix, index)) for index, value in enumerate(document)]
    else:
        return [prefix]
    return [prefix, *(path for child in children for path in child)]


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[str, Any]:
    """A real payload with one node (leaf or subtree) replaced by an arbitrary value, or deleted."""
    endpoint, original = draw(st.sampled_from(REAL_PAYLOADS))
    document = json.loads(json.dumps(original))
    where = draw(st.sampled_from(leaf_paths(document)[::-1]))  # leaves first: hypothesis favours early choices
    if not where:
        return endpoint, draw(json_values)
    parent = document
    for step in where[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(json_values)
    return endpoint, document


def test_platform_shaped_payloads_with_arbitrary_values_never_5xx(tmp_path):
    target = FuzzTarget(tmp_path)

    @FUZZ
    @given(
        case=st.one_of(
            messenger_payloads.map(lambda d: ("/webhooks/meta", d)),
            whatsapp_payloads.map(lambda d: ("/webhooks/whatsapp", d)),
            telegram_payloads.map(lambda d: ("/webhooks/telegram", d)),
            generic_payloads.map(lambda d: ("/webhooks/generic", d)),
            st.lists(generic_payloads, max_size=3).map(lambda d: ("/webhooks/generic", d)),
        )
    )
    def run(case):
        path, document = case
        check_signed(target, path, json.dumps(document).encode())

    try:
        run()
    finally:
        target.close()


def test_real_payloads_with_one_node_replaced_or_deleted_never_5xx(tmp_path):
    target = FuzzTarget(tmp_path)

    @FUZZ
    @given(case=mutated_payloads())
    def run(case):
        path, document = case
        check_signed(target, path, json.dumps(document).encode())

    try:
        run()
    finally:
        target.close()
    # Many mutations leave a publishable message: the fuzzing reaches publishing, not only refusals
    # (about 20 of 150 examples publish; 5 leaves room for hypothesis' randomness).
    assert len(target.publisher.on(topics.INBOUND)) >= 5
