"""delivery as a process on the real broker and Redis, sending to a local stand-in of Telegram."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from elmo.contracts.codec import decode
from elmo.contracts.events import DeadLetter, Feedback, FeedbackKind, Recommendation, Reply
from tests.integration.edges.platform_standin import Reply as Answer
from tests.integration.kafka_io import end_offsets, produce, read_from

pytestmark = pytest.mark.integration


def telegram_reply(chat_id: str, **fields) -> dict:
    reply = Reply(
        event_id=f"it-reply-{uuid.uuid4().hex}",
        conversation_id=f"tg-4242-{chat_id}",
        user_id=chat_id,
        channel="telegram",
        text="The Aurora runner comes in blue.",
        strategy="recommend",
        recommendations=[Recommendation(item_id="sku-1", name="Aurora runner", score=0.9, reason="blue", tracking_id=f"trk-{chat_id}")],
        **fields,
    )
    return json.loads(reply.model_dump_json())


def unique_chat() -> str:
    return str(uuid.uuid4().int)[:12]


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_a_reply_produced_twice_is_sent_once_and_its_views_reach_feedback(delivery, standin, connections):
    bootstrap = connections.kafka_bootstrap_servers
    chat = unique_chat()
    reply = telegram_reply(chat)
    feedback_offsets = end_offsets(bootstrap, "elmo.feedback")

    produce(bootstrap, "elmo.replies", [reply, reply])

    wait_for(lambda: len(standin.sends(chat)) >= 1)
    time.sleep(3)  # room for a second send, which must not come
    (sent,) = standin.sends(chat)
    assert sent.json["chat_id"] == chat and sent.json["text"].startswith("The Aurora runner comes in blue.")
    (view,) = read_from(bootstrap, feedback_offsets, lambda r: r.key == reply["conversation_id"].encode(), 2, timeout_s=5)
    feedback = decode(view.value, Feedback)
    assert feedback.kind is FeedbackKind.RECOMMENDATION_VIEWED and feedback.reply_event_id == reply["event_id"]
    assert feedback.tracking_id == f"trk-{chat}"


def test_a_reply_the_runtime_forgot_is_still_not_sent_again(delivery, standin, connections):
    """What a crash between the send and the runtime's record looks like: the handled mark is gone."""
    bootstrap = connections.kafka_bootstrap_servers
    chat = unique_chat()
    reply = telegram_reply(chat)
    produce(bootstrap, "elmo.replies", [reply])
    wait_for(lambda: len(standin.sends(chat)) == 1)

    store = redis.Redis.from_url(connections.redis_url)
    handled = f"elmo:handled:{delivery.group}:{reply['event_id']}"  # the runtime's mark, per consumer group
    wait_for(lambda: store.get(handled) is not None, timeout_s=10)
    assert store.get(f"elmo:delivery:send:{reply['event_id']}") == b"sent"
    store.delete(handled)
    produce(bootstrap, "elmo.replies", [reply])

    wait_for(lambda: store.get(handled) is not None, timeout_s=20)
    time.sleep(1)
    assert len(standin.sends(chat)) == 1


def test_a_reply_the_platform_refuses_goes_to_the_dead_letter_topic_without_retries(delivery, standin, connections):
    bootstrap = connections.kafka_bootstrap_servers
    chat = unique_chat()
    standin.script(chat, Answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}))
    reply = telegram_reply(chat)
    offsets = end_offsets(bootstrap, "elmo.dlq.delivery")

    produce(bootstrap, "elmo.replies", [reply])

    (record,) = read_from(bootstrap, offsets, lambda r: r.key == reply["conversation_id"].encode(), 1, timeout_s=30)
    letter = decode(record.value, DeadLetter)
    assert (letter.reason, letter.original_event_id, letter.service) == ("rejected", reply["event_id"], "delivery")
    assert "chat not found" in letter.error_message
    assert json.loads(letter.original_value)["event_id"] == reply["event_id"]
    assert len(standin.sends(chat)) == 1


def test_a_platform_down_is_retried_then_sent(delivery, standin, connections):
    bootstrap = connections.kafka_bootstrap_servers
    chat = unique_chat()
    standin.script(chat, 503, 502)
    produce(bootstrap, "elmo.replies", [telegram_reply(chat)])
    wait_for(lambda: len(standin.sends(chat)) == 3)
    time.sleep(1)
    assert len(standin.sends(chat)) == 3  # two failures, one success, nothing after
