"""Sending each reply once, retrying what is worth it, and reporting the recommendations shown."""

import asyncio
import json
import time

from elmo.contracts import topics
from elmo.contracts.events import Channel, Feedback, FeedbackKind, Reply
from elmo.runtime.idempotency import InMemorySeenEvents
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.processing import BatchProcessor, RetryPolicy
from elmo.runtime.records import ConsumedRecord
from elmo.runtime.stage import RejectedInput, Stage
from services.delivery.claims import InMemorySendClaims
from services.delivery.core import DeliveryCore, SendFailed
from services.delivery.metrics import DeliveryMetrics
from tests.integration.edges.platform_standin import Reply as Answer
from tests.unit.delivery.conftest import FAST, reply


async def test_a_reply_is_sent_once_and_each_recommendation_is_reported_viewed(standin, core):
    sent = reply()
    (result,) = await core.deliver_batch([sent])
    (request,) = standin.sends("123")
    assert request.json["text"].startswith("The Aurora runner comes in blue")
    assert "• Aurora runner: http://127.0.0.1:8108/r/abc" in request.json["text"]
    assert [f.kind for f in result] == [FeedbackKind.RECOMMENDATION_VIEWED] * 2
    assert [(f.tracking_id, f.item_id) for f in result] == [("trk-1", "sku-1"), ("trk-2", "sku-2")]
    for view in result:
        assert isinstance(view, Feedback)
        assert view.reply_event_id == "r-1" and view.parent_event_id == "r-1"
        assert (view.conversation_id, view.user_id, view.channel, view.origin_event_id) == (
            sent.conversation_id,
            "123",
            Channel.TELEGRAM,
            "in-1",
        )
    assert core.metrics.value("elmo_replies_sent_total", channel="telegram") == 1


async def test_every_platform_is_reached_through_its_own_api(standin, core):
    replies = [
        reply("r-m", Channel.MESSENGER, "2222", "fb-1-2222"),
        reply("r-i", Channel.INSTAGRAM, "9001", "ig-1-9001"),
        reply("r-w", Channel.WHATSAPP, "33612345678", "wa-1-33612345678"),
        reply("r-t", Channel.TELEGRAM, "123"),
    ]
    results = await core.deliver_batch(replies)
    assert all(len(r) == 2 for r in results)
    assert sorted(r.path for r in standin.sends()) == sorted(
        ["/graph/me/messages", "/graph/me/messages", "/graph/106540352242922/messages", "/tg/bot4242:test-bot-secret/sendMessage"]
    )


async def test_5xx_and_timeouts_are_retried_with_backoff_until_the_platform_takes_it(standin, core):
    standin.script("123", 503, Answer(500))
    (result,) = await core.deliver_batch([reply()])
    assert len(standin.sends("123")) == 3 and len(result) == 2
    assert core.metrics.value("elmo_send_attempts_total", channel="telegram", outcome="unavailable") == 2
    assert core.metrics.value("elmo_send_attempts_total", channel="telegram", outcome="ok") == 1


async def test_a_4xx_is_not_retried_and_is_rejected_for_the_dead_letter_topic(standin, core):
    standin.script("123", Answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}))
    (result,) = await core.deliver_batch([reply()])
    assert isinstance(result, RejectedInput) and "chat not found" in str(result)
    assert len(standin.sends("123")) == 1
    # Nothing was sent, so the claim is released: a replay after fixing the cause may send.
    assert "r-1" not in core.claims.values


async def test_a_platform_down_through_every_try_fails_the_reply_bounded(standin, core):
    standin.script("123", 503, 503, 503, 503)
    started = time.monotonic()
    (result,) = await core.deliver_batch([reply()])
    assert isinstance(result, SendFailed) and "after 3 tries" in str(result)
    assert len(standin.sends("123")) == FAST.attempts
    assert time.monotonic() - started < 2
    assert "r-1" not in core.claims.values


async def test_a_reply_is_never_sent_twice_even_when_the_runtime_forgets_it(standin, senders):
    """The same claims shared by two processes, the first crashing after the send."""
    claims = InMemorySendClaims()
    first, restarted = DeliveryCore(senders, claims, DeliveryMetrics(), FAST), DeliveryCore(senders, claims, DeliveryMetrics(), FAST)
    (shown,) = await first.deliver_batch([reply()])
    (again,) = await restarted.deliver_batch([reply()])
    assert len(standin.sends("123")) == 1
    assert [f.tracking_id for f in again] == [f.tracking_id for f in shown]  # views still reported
    assert restarted.metrics.value("elmo_replies_skipped_total", channel="telegram", reason="already_sent") == 1


async def test_a_send_interrupted_mid_way_is_not_repeated_but_dead_lettered_after_the_lease(standin, senders):
    claims = InMemorySendClaims()
    claims.values["r-1"] = f"sending:crashed:{time.time() - FAST.lease_s - 1:.3f}".encode()
    core = DeliveryCore(senders, claims, DeliveryMetrics(), FAST)
    (result,) = await core.deliver_batch([reply()])
    assert isinstance(result, RejectedInput) and "may have reached the customer" in str(result)
    assert standin.sends() == []


async def test_a_send_in_flight_elsewhere_is_waited_for(standin, senders):
    claims = InMemorySendClaims()
    claims.values["r-1"] = f"sending:other:{time.time():.3f}".encode()
    core = DeliveryCore(senders, claims, DeliveryMetrics(), FAST)

    async def other_attempt_finishes() -> None:
        await asyncio.sleep(0.1)
        await claims.mark_sent("r-1")

    (result, _) = await asyncio.gather(core.deliver(reply()), other_attempt_finishes())
    assert len(result) == 2 and standin.sends() == []


async def test_channels_without_a_sender_are_skipped_and_counted(standin, core):
    core.senders.pop(Channel.INSTAGRAM)
    results = await core.deliver_batch([reply("r-web", Channel.WEB, "u-1", "web-1"), reply("r-ig", Channel.INSTAGRAM, "9", "ig-1-9")])
    assert results == [None, None] and standin.sends() == []
    assert core.metrics.value("elmo_replies_skipped_total", channel="web", reason="no_sender") == 1
    assert core.metrics.value("elmo_replies_skipped_total", channel="instagram", reason="no_sender") == 1


class SlowFirstSender:
    channel, max_chars = Channel.TELEGRAM, 4096

    def __init__(self) -> None:
        self.order: list[str] = []

    async def send(self, recipient: str, text: str) -> None:
        await asyncio.sleep(0.2 if text.startswith("first") else 0.0)
        self.order.append(text.split()[0] + "-" + recipient)


async def test_one_conversation_is_sent_in_order_and_conversations_side_by_side():
    sender = SlowFirstSender()
    core = DeliveryCore({Channel.TELEGRAM: sender}, InMemorySendClaims(), DeliveryMetrics(), FAST)
    replies = [
        reply("a1", user_id="1", text="first of one", recommendations=[]),
        reply("a2", user_id="1", text="second of one", recommendations=[]),
        reply("b1", user_id="2", text="only of two", recommendations=[]),
    ]
    await core.deliver_batch(replies)
    # Conversation 2 did not wait for conversation 1's slow send; conversation 1 kept its order.
    assert sender.order == ["only-2", "first-1", "second-1"]


async def test_through_the_runtime_views_go_to_feedback_and_refusals_to_the_dead_letter_topic(standin, core):
    standin.script("404404", Answer(400, {"ok": False, "description": "Bad Request: chat not found"}))
    stage = Stage("delivery", topics.REPLIES, topics.FEEDBACK, Reply, core.deliver_batch)
    published = []

    async def publish(records):
        published.extend(records)

    processor = BatchProcessor(stage, publish, InMemorySeenEvents(), ServiceMetrics("delivery"), RetryPolicy(2, 0, 0))
    good, refused = reply("r-ok"), reply("r-refused", user_id="404404")
    records = [
        ConsumedRecord(topics.REPLIES.name, 0, offset, r.key, r.model_dump_json().encode())
        for offset, r in enumerate([good, refused, good])
    ]
    await processor.handle(records)

    feedback = [json.loads(r.value) for r in published if r.topic == topics.FEEDBACK.name]
    letters = [r for r in published if r.topic == "elmo.dlq.delivery"]
    assert [f["tracking_id"] for f in feedback] == ["trk-1", "trk-2"]
    assert all(f["kind"] == "recommendation_viewed" and f["reply_event_id"] == "r-ok" for f in feedback)
    assert len(letters) == 1 and letters[0].headers["elmo.dlq.reason"] == "rejected"
    assert "chat not found" in letters[0].headers["elmo.dlq.exception.message"]
    assert len(standin.sends("123")) == 1


class ClaimsFailingFor(InMemorySendClaims):
    """In-memory claims that fail for one reply as an unreachable Redis would."""

    def __init__(self, failing_reply: str) -> None:
        super().__init__()
        self.failing_reply = failing_reply

    async def claim(self, reply_id: str):
        if reply_id == self.failing_reply:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")
        return await super().claim(reply_id)


async def test_a_failure_in_one_conversation_is_raised_only_once_the_others_are_done(standin, senders):
    """The runtime retries a failed batch reply by reply; nothing of the first try may still be running then."""
    sender = SlowFirstSender()
    claims = ClaimsFailingFor("broken")
    core = DeliveryCore({Channel.TELEGRAM: sender}, claims, DeliveryMetrics(), FAST)
    batch = [reply("broken", user_id="1", recommendations=[]), reply("slow", user_id="2", text="first of two", recommendations=[])]
    try:
        await core.deliver_batch(batch)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the Redis failure must reach the runtime")
    assert sender.order == ["first-2"] and claims.values["slow"] == b"sent"
    # The runtime's retry of the slow one finds it sent and does not send it again.
    assert await core.deliver(batch[1]) is not None and sender.order == ["first-2"]
