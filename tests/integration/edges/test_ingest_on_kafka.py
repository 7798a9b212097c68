"""ingest as a process on the real broker and Redis: signed webhooks in, events on elmo.inbound."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from elmo.contracts.codec import decode
from elmo.contracts.events import BlobAudio, Feedback, FeedbackKind, InboundMessage, InlineAudio
from elmo.tracking_links import TrackedLink, make_token
from services.ingest.signatures import sign
from tests.integration.edges.conftest import GENERIC_SECRET, WHATSAPP_SECRET
from tests.integration.edges.platform_standin import GRAPH_TOKEN
from tests.integration.kafka_io import end_offsets, read_from

pytestmark = pytest.mark.integration


def whatsapp_body(phone_number_id: str, wa_id: str, message: dict) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "A"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "timestamp": "1603059201", **message}],
    }
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}]}
    ).encode()


def unique_number() -> str:
    return str(uuid.uuid4().int)[:15]


def post(ingest, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{ingest.port}{path}", content=body, headers={"content-type": "application/json", **headers}, timeout=30
    )


def inbound_for(bootstrap: str, offsets, conversation_id: str, expected: int, timeout_s: float) -> list:
    return read_from(bootstrap, offsets, lambda r: r.key == conversation_id.encode(), expected, timeout_s=timeout_s)


def test_a_signed_whatsapp_text_lands_on_elmo_inbound_once(ingest, connections):
    bootstrap = connections.kafka_bootstrap_servers
    phone, wa_id = unique_number(), unique_number()
    conversation = f"wa-{phone}-{wa_id}"
    body = whatsapp_body(phone, wa_id, {"id": f"wamid.{uuid.uuid4().hex}", "type": "text", "text": {"body": "do you have it in blue?"}})
    offsets = end_offsets(bootstrap, "elmo.inbound")

    first = post(ingest, "/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign(WHATSAPP_SECRET, body)})
    retry = post(ingest, "/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign(WHATSAPP_SECRET, body)})

    assert first.status_code == 200 and first.json()["published"] == 1
    assert retry.status_code == 200 and retry.json()["duplicates"] == 1
    # Answered 200 only after the broker acknowledged: the record is there already.
    records = inbound_for(bootstrap, offsets, conversation, expected=2, timeout_s=5)
    assert len(records) == 1
    event = decode(records[0].value, InboundMessage)
    assert (event.user_id, event.text, event.channel.value) == (wa_id, "do you have it in blue?", "whatsapp")
    assert dict(records[0].headers)["elmo.producer"] == b"ingest"


def test_a_badly_signed_webhook_is_403_and_publishes_nothing(ingest, connections):
    bootstrap = connections.kafka_bootstrap_servers
    phone, wa_id = unique_number(), unique_number()
    body = whatsapp_body(phone, wa_id, {"id": f"wamid.{uuid.uuid4().hex}", "type": "text", "text": {"body": "forged"}})
    offsets = end_offsets(bootstrap, "elmo.inbound")

    forged = post(ingest, "/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign("not-the-app-secret", body)})
    unsigned = post(ingest, "/webhooks/whatsapp", body, {})

    assert forged.status_code == 403 and forged.json()["error"] == "bad_signature"
    assert unsigned.status_code == 401
    assert inbound_for(bootstrap, offsets, f"wa-{phone}-{wa_id}", expected=1, timeout_s=4) == []
    metrics = httpx.get(f"http://127.0.0.1:{ingest.port}/metrics").text
    assert 'elmo_webhook_rejected_total{endpoint="whatsapp",reason="bad_signature",service="ingest"}' in metrics


def test_voice_notes_are_fetched_and_published_inline_or_as_a_blob(ingest, standin, connections):
    bootstrap = connections.kafka_bootstrap_servers
    phone, wa_id = unique_number(), unique_number()
    small, large = b"OggS-small" * 100, b"OggS-large" * 60_000  # 1 KB and 600 KB
    standin.add_media(f"m-small-{phone}", small, "audio/ogg", bearer=GRAPH_TOKEN)
    standin.add_media(f"m-large-{phone}", large, "audio/ogg", bearer=GRAPH_TOKEN)
    offsets = end_offsets(bootstrap, "elmo.inbound")
    for name in ("small", "large"):
        message = {
            "id": f"wamid.{name}.{phone}",
            "type": "audio",
            "audio": {"id": f"m-{name}-{phone}", "mime_type": "audio/ogg; codecs=opus", "voice": True},
        }
        body = whatsapp_body(phone, wa_id, message)
        assert post(ingest, "/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign(WHATSAPP_SECRET, body)}).status_code == 200

    inline, blob = (decode(r.value, InboundMessage).audio for r in inbound_for(bootstrap, offsets, f"wa-{phone}-{wa_id}", 2, 30))
    assert isinstance(inline, InlineAudio) and inline.data() == small
    assert isinstance(blob, BlobAudio) and blob.uri.startswith("file://") and blob.size_bytes == len(large)


def test_generic_events_and_the_rate_limit_use_redis(ingest, connections):
    bootstrap = connections.kafka_bootstrap_servers
    conversation = f"it-generic-{uuid.uuid4().hex[:12]}"
    offsets = end_offsets(bootstrap, "elmo.inbound")
    statuses = []
    for i in range(7):  # the process runs with ELMO_INGEST_RATE_LIMIT=5
        body = json.dumps(
            {
                "event_id": f"{conversation}-{i}",
                "conversation_id": conversation,
                "user_id": conversation,
                "channel": "web",
                "text": f"hi {i}",
            }
        ).encode()
        statuses.append(post(ingest, "/webhooks/generic", body, {"X-Elmo-Signature": sign(GENERIC_SECRET, body)}).status_code)
    assert statuses == [200] * 5 + [429] * 2
    assert len(inbound_for(bootstrap, offsets, conversation, expected=6, timeout_s=5)) == 5


def test_a_tracking_link_click_goes_to_elmo_feedback_then_redirects(ingest, connections):
    bootstrap = connections.kafka_bootstrap_servers
    conversation = f"it-click-{uuid.uuid4().hex[:12]}"
    link = TrackedLink(tracking_id=uuid.uuid4().hex, item_id="sku-7", user_id="u-7", conversation_id=conversation, channel="telegram")
    offsets = end_offsets(bootstrap, "elmo.feedback")

    response = httpx.get(f"http://127.0.0.1:{ingest.port}/r/{make_token(link, 'dev-only-tracking-secret')}", follow_redirects=False)
    missing = httpx.get(f"http://127.0.0.1:{ingest.port}/r/not-a-token", follow_redirects=False)

    assert response.status_code == 302 and response.headers["location"] == "https://shop.northwind.example/p/sku-7"
    assert missing.status_code == 404
    (record,) = read_from(bootstrap, offsets, lambda r: r.key == conversation.encode(), 1, timeout_s=10)
    click = decode(record.value, Feedback)
    assert click.kind is FeedbackKind.RECOMMENDATION_CLICKED and (click.tracking_id, click.item_id) == (link.tracking_id, "sku-7")
