"""Which reactions reward which reply variant, and which ones the per-user cap applies to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from elmo.contracts.events import Feedback, FeedbackKind, Reply
from elmo.reply_bandit import ArmCounts, ReplyRecord, Reward, parse_counts
from elmo.runtime.stage import RejectedInput
from elmo.learning.feedback import reward_for, unusable_handoff_outcome

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
REPLY = ReplyRecord("r-1", "greet", "greet:2", "greeting", "hello there", "c1", "u1")


def feedback(kind: FeedbackKind, **fields) -> Feedback:
    return Feedback(conversation_id="c1", user_id="u1", channel="web", kind=kind, created_at=AT, event_id="fb-1", reply_event_id="r-1", **fields)


def test_a_thumbs_up_is_a_success_and_a_thumbs_down_a_failure_both_capped_per_user():
    up, down = reward_for(feedback(FeedbackKind.REPLY_RATED, rating=1), REPLY), reward_for(feedback(FeedbackKind.REPLY_RATED, rating=-1), REPLY)
    assert up == Reward("fb-1", "u1", "greet", "greet:2", True, AT.timestamp(), rate_limited=True)
    assert down is not None and down.success is False and down.rate_limited


@pytest.mark.parametrize("kind", [FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED])
def test_a_click_or_purchase_from_a_known_reply_is_an_uncapped_success(kind):
    reward = reward_for(feedback(kind, item_id="phone-1"), REPLY)
    assert reward is not None and reward.success and not reward.rate_limited and reward.variant == "greet:2"


@pytest.mark.parametrize(
    ("kind", "fields", "reply"),
    [
        (FeedbackKind.REPLY_RATED, {"rating": 1}, None),  # reply not in the index (expired)
        (FeedbackKind.REPLY_RATED, {}, REPLY),  # no rating
        (FeedbackKind.RECOMMENDATION_VIEWED, {"item_id": "phone-1"}, REPLY),  # a view says nothing about the wording
        (FeedbackKind.INTENT_CORRECTED, {"corrected_label": "greeting"}, REPLY),
        (FeedbackKind.REPLY_RATED, {"rating": 1}, ReplyRecord("r-1", "", "", "", "", "c1", "u1")),  # no variant recorded
    ],
)
def test_other_reactions_reward_nothing(kind, fields, reply):
    assert reward_for(feedback(kind, **fields), reply) is None


HANDOFF = ReplyRecord("r-1", "handoff", "handoff:1", "human_handoff", "let me talk to a person", "c1", "u1")


@pytest.mark.parametrize(("outcome", "success"), [("resolved", True), ("abandoned", False), ("returned_to_bot", False)])
def test_a_handoff_outcome_rewards_the_wording_of_the_reply_that_handed_off(outcome, success):
    event = feedback(FeedbackKind.HANDOFF_OUTCOME, outcome=outcome, agent_id="agent-7")
    reward = reward_for(event, HANDOFF)
    assert reward == Reward("fb-1", "u1", "handoff", "handoff:1", success, AT.timestamp(), rate_limited=False)
    assert unusable_handoff_outcome(event) is None


def test_an_unknown_handoff_outcome_or_one_about_no_reply_is_rejected_with_the_reason():
    unknown = feedback(FeedbackKind.HANDOFF_OUTCOME, outcome="great")
    assert reward_for(unknown, HANDOFF) is None
    assert isinstance(rejection := unusable_handoff_outcome(unknown), RejectedInput) and "'great'" in str(rejection)
    orphan = Feedback(conversation_id="c1", user_id="u1", channel="web", kind=FeedbackKind.HANDOFF_OUTCOME, outcome="resolved")
    assert "reply_event_id" in str(unusable_handoff_outcome(orphan))


def test_the_index_entry_round_trips_a_reply():
    reply = Reply(conversation_id="c9", user_id="u9", channel="web", text="Hi!", strategy="greet", variant="greet:1",
                  intent="greeting", in_reply_to_text="hello")  # fmt: skip
    record = ReplyRecord.of(reply)
    assert ReplyRecord.from_fields(reply.event_id, record.fields()) == record
    assert record.fields() == {"strategy": "greet", "variant": "greet:1", "intent": "greeting", "text": "hello", "conversation": "c9", "user": "u9"}


def test_the_index_entry_keeps_what_nlu_and_sentiment_made_of_the_message():
    reply = Reply(conversation_id="c9", user_id="u9", channel="web", text="Sorry!", strategy="complaint", variant="complaint:0",
                  intent="complaint", intent_confidence=0.93, sentiment_label="negative", sentiment_score=-0.8125, in_reply_to_text="awful")  # fmt: skip
    record = ReplyRecord.of(reply)
    fields = record.fields()
    assert (fields["intent_confidence"], fields["sentiment"], fields["sentiment_score"]) == ("0.93", "negative", "-0.8125")
    assert ReplyRecord.from_fields(reply.event_id, fields) == record
    assert (record.intent_confidence, record.sentiment_label, record.sentiment_score) == (0.93, "negative", -0.8125)


def test_an_index_entry_written_before_the_predictions_reads_without_them():
    old = {"strategy": "greet", "variant": "greet:1", "intent": "greeting", "text": "hello", "conversation": "c9", "user": "u9"}
    record = ReplyRecord.from_fields("r-9", old)
    assert record == ReplyRecord("r-9", "greet", "greet:1", "greeting", "hello", "c9", "u9")
    assert (record.intent_confidence, record.sentiment_label, record.sentiment_score) == (None, "", None)
    assert ReplyRecord.from_fields("r-9", {**old, "intent_confidence": "junk"}).intent_confidence is None


def test_counts_are_read_per_variant():
    fields = {"success:greet:0": "3", "failure:greet:0": "1", "failure:greet:1": "4", "junk": "9"}
    assert parse_counts(fields) == {"greet:0": ArmCounts(3, 1), "greet:1": ArmCounts(0, 4)}
