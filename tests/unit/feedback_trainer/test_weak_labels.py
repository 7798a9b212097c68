"""Confident weak labels: which +1 ratings make one, that a correction outranks them, that the
learner hands them to every head's collector, and that a fine-tune weighs them below corrections
and the replayed originals. (Collection in Redis, its caps and what starts a fine-tune:
tests/integration/feedback/test_weak_labels_on_redis.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models.classifier import HeadConfig
from elmo.reply_bandit import Outcome, ReplyRecord
from elmo.runtime.stage import CoreResult
from elmo.learning.corrections import INTENT, SENTIMENT, Correction, weak_label_from, without_contradictions
from elmo.learning.feedback import FeedbackLearner, weak_label_config
from services.feedback_trainer.corrections import FineTuneConfig, fine_tune_head
from services.feedback_trainer.settings import FeedbackTrainerSettings

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def reply(intent_confidence: float | None = 0.95, sentiment: str = "negative", score: float | None = -0.9, text: str = "my order never came") -> ReplyRecord:
    return ReplyRecord("r-1", "order_status", "order_status:0", "order_status", text, "c1", "u1", intent_confidence, sentiment, score)


def rating(value: int = 1, kind: FeedbackKind = FeedbackKind.REPLY_RATED, reply_event_id: str = "r-1") -> Feedback:
    return Feedback(conversation_id="c1", user_id="u1", channel="web", kind=kind, rating=value, reply_event_id=reply_event_id,
                    created_at=AT, event_id="fb-1")  # fmt: skip


def test_a_confident_reply_rated_up_is_a_weak_label_of_each_head() -> None:
    assert weak_label_from(INTENT, rating(), reply(), 0.9) == Correction("fb-1", "u1", "my order never came", "order_status", AT.timestamp())
    assert weak_label_from(SENTIMENT, rating(), reply(), 0.8) == Correction("fb-1", "u1", "my order never came", "negative", AT.timestamp())
    assert weak_label_from(SENTIMENT, rating(), reply(sentiment="positive", score=0.85), 0.8).label == "positive"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("event", "found"),
    [
        (rating(-1), reply()),  # rated down: the reply (and maybe the reading) was wrong
        (rating(kind=FeedbackKind.RECOMMENDATION_CLICKED), reply()),  # not a rating
        (rating(), None),  # not in the index
        (rating(), reply(text=" ")),
        (rating(), ReplyRecord.from_fields("r-1", {"strategy": "greet", "variant": "greet:0", "intent": "greeting", "text": "hi"})),  # old entry
    ],
)
def test_no_weak_label_without_a_thumbs_up_on_a_known_reply_with_predictions(event: Feedback, found: ReplyRecord | None) -> None:
    assert weak_label_from(INTENT, event, found, 0.9) is None
    assert weak_label_from(SENTIMENT, event, found, 0.8) is None


def test_a_prediction_below_the_threshold_is_no_weak_label() -> None:
    assert weak_label_from(INTENT, rating(), reply(intent_confidence=0.89), 0.9) is None
    assert weak_label_from(INTENT, rating(), reply(intent_confidence=0.9), 0.9) is not None
    assert weak_label_from(SENTIMENT, rating(), reply(score=-0.6), 0.8) is None


@pytest.mark.parametrize(
    ("sentiment", "score"),
    [("neutral", 0.0), ("neutral", 0.95), ("positive", -0.9), ("negative", 0.9), ("", -0.9), ("negative", None)],
)
def test_sentiment_weak_labels_are_only_a_sure_positive_or_negative(sentiment: str, score: float | None) -> None:
    assert weak_label_from(SENTIMENT, rating(), reply(sentiment=sentiment, score=score), 0.8) is None


def test_a_correction_of_the_same_text_outranks_a_weak_label() -> None:
    weak = [Correction("fb-1", "u1", "My  order never came", "order_status", 0.0), Correction("fb-2", "u2", "thanks!", "thanks", 0.0),
            Correction("fb-3", "u3", "is it waterproof", "product_inquiry", 0.0)]  # fmt: skip
    corrections = [Correction("fb-9", "agent", "my order never came", "complaint", 0.0), Correction("fb-8", "agent", "thanks!", "thanks", 0.0)]
    assert [w.feedback_event_id for w in without_contradictions(weak, corrections)] == ["fb-2", "fb-3"]


@dataclass
class RecordingHead:
    """Stands in for an `EmbeddingClassifier`: records what a fine-tune was given (no torch, no model)."""

    config: HeadConfig = field(default_factory=HeadConfig)
    calls: list[tuple[list[str], np.ndarray]] = field(default_factory=list)

    def fine_tune(self, features: np.ndarray, targets: list[str], epochs: int, learning_rate: float, weights: np.ndarray) -> None:
        self.calls.append((targets, weights))


class ZeroEmbedder:
    version = "zero"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), 8), dtype=np.float32)


def test_a_fine_tune_weighs_weak_labels_below_corrections_and_replayed_originals() -> None:
    corrections = [Correction(f"fb-{n}", "agent", f"zorblax {n}", "purchase", 0.0) for n in range(2)]
    weak = [Correction(f"fb-w{n}", f"u{n}", f"where is my parcel {n}", "order_status", 0.0) for n in range(3)]
    head = RecordingHead()
    tuned, training_data = fine_tune_head(INTENT, head, ZeroEmbedder(), corrections, FineTuneConfig(replay_examples=4), weak)  # type: ignore[arg-type]
    (targets, weights), = tuned.calls
    assert targets[:5] == ["purchase"] * 2 + ["order_status"] * 3
    assert weights.tolist() == [2.0, 2.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert training_data["corrections"] == 2 and training_data["weak_labels"] == 3 and training_data["weak_label_weight"] == 0.5
    assert training_data["weak_label_feedback_event_ids"] == ["fb-w0", "fb-w1", "fb-w2"]
    assert not head.calls  # the head given is left alone


@dataclass
class RecordingSink:
    collected: list[list[str]] = field(default_factory=list)
    weak: list[list[str]] = field(default_factory=list)

    async def collect(self, events: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> list[CoreResult]:
        self.collected.append([e.event_id for e in events])
        return [None] * len(events)

    async def collect_weak_labels(self, ratings: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> None:
        self.weak.append([e.event_id for e in ratings])


class NoInteractions:
    async def record_many(self, interactions: Sequence[object]) -> int:
        return 0


class IndexOfOne:
    async def replies(self, event_ids) -> dict[str, ReplyRecord]:  # noqa: ANN001
        return {i: reply() for i in event_ids if i == "r-1"}

    async def apply_rewards(self, rewards: Sequence[object], cap: int) -> list[Outcome]:
        return [Outcome.COUNTED] * len(rewards)


async def test_the_learner_hands_thumbs_up_on_known_replies_to_every_head() -> None:
    intent, sentiment = RecordingSink(), RecordingSink()
    learner = FeedbackLearner(NoInteractions(), IndexOfOne(), 10, corrections={FeedbackKind.INTENT_CORRECTED: intent,  # type: ignore[arg-type]
                                                                              FeedbackKind.SENTIMENT_CORRECTED: sentiment})  # fmt: skip
    up, down, unknown = rating(1), rating(-1).model_copy(update={"event_id": "fb-2"}), rating(1, reply_event_id="r-gone").model_copy(update={"event_id": "fb-3"})
    assert await learner.learn([up, down, unknown]) == [None] * 3
    assert intent.weak == sentiment.weak == [["fb-1"]]
    assert intent.collected == sentiment.collected == []  # a rating is no correction
    await learner.learn([down])
    assert intent.weak == [["fb-1"]]


def test_each_head_has_its_own_threshold_and_weak_labels_can_be_off() -> None:
    settings = FeedbackTrainerSettings(trainer_weak_label_min_confidence=0.95, trainer_weak_label_min_sentiment_score=0.7, trainer_weak_labels_kept=50)
    assert (weak_label_config(settings, INTENT).threshold, weak_label_config(settings, SENTIMENT).threshold) == (0.95, 0.7)  # type: ignore[union-attr]
    assert weak_label_config(settings, INTENT).kept == 50  # type: ignore[union-attr]
    assert weak_label_config(FeedbackTrainerSettings(trainer_weak_labels=False), INTENT) is None
