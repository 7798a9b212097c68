"""Which feedback becomes an interaction the recommender learns from, and with what weight."""

from datetime import UTC, datetime

import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.interactions import WEIGHTS, Interaction, InteractionKind, interaction_from_feedback

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def feedback(kind: FeedbackKind, item_id: str | None = "phone-pixel-9", **fields) -> Feedback:
    return Feedback(conversation_id="c1", user_id="u1", channel="web", kind=kind, item_id=item_id, created_at=AT, event_id="fb-1", **fields)


@pytest.mark.parametrize(
    ("kind", "expected", "weight"),
    [
        (FeedbackKind.RECOMMENDATION_VIEWED, InteractionKind.VIEW, 1.0),
        (FeedbackKind.RECOMMENDATION_CLICKED, InteractionKind.CLICK, 4.0),
        (FeedbackKind.RECOMMENDATION_PURCHASED, InteractionKind.PURCHASE, 10.0),
    ],
)
def test_views_clicks_and_purchases_become_weighted_interactions(kind, expected, weight):
    interaction = interaction_from_feedback(feedback(kind, tracking_id="t-1"))
    assert interaction == Interaction("u1", "phone-pixel-9", expected, AT, "fb-1")
    assert interaction.weight == weight == WEIGHTS[expected]


def test_a_purchase_weighs_more_than_a_click_which_weighs_more_than_a_view():
    assert WEIGHTS[InteractionKind.PURCHASE] > WEIGHTS[InteractionKind.CLICK] > WEIGHTS[InteractionKind.VIEW] > 0


@pytest.mark.parametrize("kind", [FeedbackKind.RECOMMENDATION_VIEWED, FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED])
def test_an_interaction_needs_an_item(kind):
    assert interaction_from_feedback(feedback(kind, item_id=None)) is None
    assert interaction_from_feedback(feedback(kind, item_id="")) is None


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (FeedbackKind.REPLY_RATED, {"rating": 1}),
        (FeedbackKind.HANDOFF_OUTCOME, {"outcome": "resolved"}),
        (FeedbackKind.INTENT_CORRECTED, {"corrected_label": "purchase"}),
        (FeedbackKind.SENTIMENT_CORRECTED, {"corrected_label": "negative"}),
    ],
)
def test_other_feedback_is_not_an_interaction(kind, fields):
    assert interaction_from_feedback(feedback(kind, **fields)) is None


@pytest.mark.parametrize("year", [2035, 2100, 9999])
def test_an_event_dated_in_the_future_counts_as_of_now(year):
    from elmo.interactions import DEFAULT_HALF_LIFE_S, MAX_CLOCK_SKEW, decay_factor

    forged = Feedback(conversation_id="c1", user_id="u1", channel="web", kind=FeedbackKind.RECOMMENDATION_PURCHASED,
                      item_id="phone-pixel-9", created_at=datetime(year, 1, 1, tzinfo=UTC))  # fmt: skip
    interaction = interaction_from_feedback(forged)
    assert interaction.at <= datetime.now(UTC) + MAX_CLOCK_SKEW
    # No OverflowError, and no more weight than a purchase made now (2035 used to add ~1e172 times more).
    now = (datetime.now(UTC) + MAX_CLOCK_SKEW).timestamp()
    assert decay_factor(interaction.at.timestamp(), DEFAULT_HALF_LIFE_S) <= decay_factor(now, DEFAULT_HALF_LIFE_S)
