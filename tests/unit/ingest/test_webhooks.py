"""The webhook endpoints end to end in-process: who may call, what is published, what is refused."""

import json

import redis.exceptions

from elmo.contracts import topics
from elmo.contracts.events import Channel, InboundMessage
from services.ingest.dedupe import InMemoryMessageClaims
from services.ingest.rate_limit import InMemoryFixedWindow
from services.ingest.signatures import sign
from tests.unit.ingest.conftest import payload


async def test_meta_and_whatsapp_subscription_handshakes(make_ingest):
    ingest = make_ingest()
    ok = await ingest.client.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "meta-verify", "hub.challenge": "1158201444"}
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    ok = await ingest.client.get(
        "/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "wa-verify", "hub.challenge": "42"}
    )
    assert ok.status_code == 200 and ok.text == "42"
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "meta-verify", "hub.challenge": "1"},
        {"hub.verify_token": "meta-verify", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "meta-verify"},
    ):
        refused = await ingest.client.get("/webhooks/meta", params=params)
        assert refused.status_code == 403 and refused.json()["error"] == "verification_failed"
    not_configured = make_ingest(meta_verify_token="")
    refused = await not_configured.client.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    )
    assert refused.status_code == 403


async def test_a_signed_whatsapp_text_is_published_keyed_by_conversation(make_ingest):
    ingest = make_ingest()
    response = await ingest.whatsapp(payload("whatsapp_text"))
    assert response.status_code == 200
    assert response.json()["published"] == 1
    (event,) = ingest.publisher.on(topics.INBOUND)
    assert isinstance(event, InboundMessage)
    assert (event.channel, event.user_id, event.text) == (Channel.WHATSAPP, "33612345678", "Hello")
    assert event.key == b"wa-106540352242922-33612345678"
    assert ingest.metric("elmo_messages_produced_total") == 1


async def test_each_platform_text_is_published(make_ingest):
    ingest = make_ingest()
    assert (await ingest.meta(payload("messenger_text"))).status_code == 200
    assert (await ingest.meta(payload("instagram_text"))).status_code == 200
    assert (await ingest.telegram(payload("telegram_text"))).status_code == 200
    channels = [e.channel for e in ingest.publisher.on(topics.INBOUND)]
    assert channels == [Channel.MESSENGER, Channel.INSTAGRAM, Channel.TELEGRAM]


async def test_unsigned_and_badly_signed_requests_are_refused_counted_and_not_published(make_ingest):
    ingest = make_ingest()
    body = payload("whatsapp_text")
    unsigned = await ingest.post("/webhooks/whatsapp", body)
    assert unsigned.status_code == 401 and unsigned.json() == {"error": "unsigned", "detail": "the request carries no signature"}
    wrong = await ingest.whatsapp(body, secret="not-the-secret")
    assert wrong.status_code == 403 and wrong.json()["error"] == "bad_signature"
    # Signed by Meta's other app: the WhatsApp endpoint has its own secret.
    assert (await ingest.meta(body)).status_code == 200  # /webhooks/meta accepts it (and ignores a WhatsApp body)
    assert (await ingest.post("/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign("meta-secret", body)})).status_code == 403
    telegram_wrong = await ingest.telegram(payload("telegram_text"), secret="nope")
    telegram_missing = await ingest.post("/webhooks/telegram", payload("telegram_text"))
    assert (telegram_wrong.status_code, telegram_missing.status_code) == (403, 401)
    assert ingest.publisher.published == []
    assert ingest.metric("elmo_webhook_rejected_total", endpoint="whatsapp", reason="unsigned") == 1
    assert ingest.metric("elmo_webhook_rejected_total", endpoint="whatsapp", reason="bad_signature") == 2
    assert ingest.metric("elmo_webhook_rejected_total", endpoint="telegram", reason="bad_signature") == 1


async def test_an_endpoint_without_a_secret_refuses_everything(make_ingest):
    ingest = make_ingest(whatsapp_app_secret="", telegram_secret_token="", generic_secret="")
    body = payload("whatsapp_text")
    for response in (
        await ingest.post("/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign("", body)}),
        await ingest.post("/webhooks/whatsapp", body),
        await ingest.telegram(payload("telegram_text"), secret=""),
        await ingest.generic(b"{}", secret=""),
    ):
        assert response.status_code == 403 and response.json()["error"] == "not_configured"
    assert ingest.publisher.published == []


async def test_echoes_receipts_and_statuses_are_acknowledged_and_counted_not_published(make_ingest):
    ingest = make_ingest()
    for response in (
        await ingest.meta(payload("messenger_echo_and_receipts")),
        await ingest.whatsapp(payload("whatsapp_statuses")),
        await ingest.telegram(payload("telegram_edited")),
        await ingest.telegram(payload("telegram_group")),
    ):
        assert response.status_code == 200 and response.json()["published"] == 0
    assert ingest.publisher.published == []
    assert ingest.metric("elmo_webhook_ignored_total", channel="meta", kind="echo") == 1
    assert ingest.metric("elmo_webhook_ignored_total", channel="meta", kind="read") == 1
    assert ingest.metric("elmo_webhook_ignored_total", channel="whatsapp", kind="status") == 3
    assert ingest.metric("elmo_webhook_ignored_total", channel="telegram", kind="not_private_chat") == 1


async def test_a_platform_retry_is_published_once(make_ingest):
    ingest = make_ingest()
    first = await ingest.whatsapp(payload("whatsapp_text"))
    again = await ingest.whatsapp(payload("whatsapp_text"))
    assert first.json()["published"] == 1
    assert again.status_code == 200 and again.json()["duplicates"] == 1 and again.json()["published"] == 0
    assert len(ingest.publisher.on(topics.INBOUND)) == 1
    assert ingest.metric("elmo_messages_duplicate_total") == 1


async def test_malformed_json_is_400_with_a_clear_body(make_ingest):
    ingest = make_ingest()
    for body in (b"{not json", b"", "\u00e9t\u00e9".encode("latin-1"), b"[" * 100_000 + b"]" * 100_000):
        response = await ingest.whatsapp(body)
        assert response.status_code == 400, body[:20]
        assert response.json()["error"] == "malformed" and response.json()["detail"].startswith("the body is not JSON")
    assert ingest.publisher.published == []


async def test_bodies_over_the_limit_are_413_whether_announced_or_streamed(make_ingest):
    ingest = make_ingest(ingest_max_body_bytes=1000)
    big = json.dumps({"object": "whatsapp_business_account", "pad": "x" * 2000}).encode()
    announced = await ingest.whatsapp(big)
    assert announced.status_code == 413 and announced.json()["error"] == "too_large"

    async def chunks():
        for _ in range(10):
            yield b"x" * 200

    streamed = await ingest.client.post("/webhooks/whatsapp", content=chunks(), headers={"X-Hub-Signature-256": "sha256=00"})
    assert streamed.status_code == 413
    assert ingest.metric("elmo_webhook_rejected_total", endpoint="whatsapp", reason="too_large") == 2


def whatsapp_text_from(sender: str, message_id: str) -> bytes:
    body = json.loads(payload("whatsapp_text"))
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["from"], message["id"] = sender, message_id
    return json.dumps(body).encode()


async def test_a_sender_over_its_rate_gets_429_and_its_redelivery_gets_through_later(make_ingest):
    ingest = make_ingest(rate_limit=2)
    statuses = [(await ingest.whatsapp(whatsapp_text_from("111", f"wamid.{i}"))).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    limited = await ingest.whatsapp(whatsapp_text_from("111", "wamid.2"))
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited" and limited.headers["retry-after"] == "60"
    assert (await ingest.whatsapp(whatsapp_text_from("222", "wamid.x"))).status_code == 200  # another sender
    assert [e.platform_message_id for e in ingest.publisher.on(topics.INBOUND)] == ["wamid.0", "wamid.1", "wamid.x"]

    ingest.service.core.limiter = InMemoryFixedWindow(limit=0, window_s=60)  # the next window
    assert (await ingest.whatsapp(whatsapp_text_from("111", "wamid.2"))).json()["published"] == 1
    assert ingest.metric("elmo_webhook_rejected_total", endpoint="whatsapp", reason="rate_limited") == 2


async def test_an_unreachable_broker_answers_503_and_the_redelivery_is_published(make_ingest):
    ingest = make_ingest()
    ingest.publisher.fail = True
    failed = await ingest.whatsapp(payload("whatsapp_text"))
    assert failed.status_code == 503 and failed.json()["error"] == "unavailable"
    ingest.publisher.fail = False
    retried = await ingest.whatsapp(payload("whatsapp_text"))
    assert retried.status_code == 200 and retried.json()["published"] == 1


def generic_event(event_id: str, **fields) -> dict:
    return {"event_id": event_id, "conversation_id": "c-generic", "user_id": "u-1", "channel": "web", "text": "hi", **fields}


async def test_generic_signed_events_one_or_a_list(make_ingest):
    ingest = make_ingest()
    one = await ingest.generic(json.dumps(generic_event("g-1")).encode())
    many = await ingest.generic(json.dumps([generic_event("g-2"), generic_event("g-3", text="more")]).encode())
    assert (one.status_code, many.status_code) == (200, 200)
    assert [e.event_id for e in ingest.publisher.on(topics.INBOUND)] == ["g-1", "g-2", "g-3"]
    again = await ingest.generic(json.dumps(generic_event("g-1")).encode())
    assert again.json()["duplicates"] == 1 and len(ingest.publisher.on(topics.INBOUND)) == 3


async def test_generic_invalid_events_are_422_and_publish_nothing_of_the_request(make_ingest):
    ingest = make_ingest()
    for body in (
        [generic_event("g-ok"), {"event_id": "g-bad", "channel": "web", "text": "no ids"}],
        [generic_event("g-ok", schema_version=99)],
        [generic_event("g-ok", text=None)],
        [generic_event("g-ok"), 7],
        [],
    ):
        response = await ingest.generic(json.dumps(body).encode())
        assert response.status_code == 422 and response.json()["error"] == "invalid", body
    assert ingest.publisher.published == []
    detail = (await ingest.generic(json.dumps([generic_event("g-ok", schema_version=99)]).encode())).json()["detail"]
    assert "schema_version 99" in detail


async def test_health_readiness_metrics_and_the_openapi_document(make_ingest):
    ingest = make_ingest()
    assert (await ingest.client.get("/healthz")).status_code == 200
    ready = await ingest.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["broker_reachable"] is True
    ingest.publisher.fail = True
    assert (await ingest.client.get("/readyz")).status_code == 503
    await ingest.whatsapp(b"x", secret="wrong")
    metrics = (await ingest.client.get("/metrics")).text
    assert 'elmo_webhook_rejected_total{endpoint="whatsapp",reason="bad_signature",service="ingest"} 1.0' in metrics
    paths = (await ingest.client.get("/openapi.json")).json()["paths"]
    assert {"/webhooks/meta", "/webhooks/whatsapp", "/webhooks/telegram", "/webhooks/generic", "/r/{token}"} <= set(paths)
    assert set(paths["/webhooks/meta"]) == {"get", "post"}
    assert "X-Hub-Signature-256" in json.dumps(paths["/webhooks/whatsapp"]["post"]["parameters"])


class ClaimsFailingOnCall:
    """In-memory claims whose n-th claim raises as an unreachable Redis would."""

    def __init__(self, failing_call: int) -> None:
        self.inner, self.calls, self.failing_call = InMemoryMessageClaims(), 0, failing_call

    async def claim(self, key: str) -> bool:
        self.calls += 1
        if self.calls == self.failing_call:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379")
        return await self.inner.claim(key)

    async def release(self, key: str) -> None:
        await self.inner.release(key)


async def test_an_unreachable_redis_answers_503_and_leaves_nothing_claimed(make_ingest):
    ingest = make_ingest()
    claims = ClaimsFailingOnCall(failing_call=2)
    ingest.service.core.claims = claims
    body = json.loads(payload("whatsapp_text"))
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.append({**messages[0], "id": "wamid.second"})
    raw = json.dumps(body).encode()

    failed = await ingest.whatsapp(raw)
    assert failed.status_code == 503 and failed.json()["error"] == "unavailable"
    assert ingest.publisher.published == []
    # The claim that did succeed was given back, so the platform's redelivery publishes both.
    retried = await ingest.whatsapp(raw)
    assert retried.status_code == 200 and retried.json()["published"] == 2
