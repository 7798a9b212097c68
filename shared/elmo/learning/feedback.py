"""What each reaction teaches: the feedback-trainer's core, and the replay of `elmo state rebuild`.

- Views, clicks and purchases of recommended items -> the interaction store the recommender reads.
- Ratings of a reply, and clicks and purchases from it -> the reply-variant bandit's counts
  (`elmo.reply_bandit`): the reply index says which strategy and variant earned them.
- Intent and sentiment corrections -> the corrections collector of their kind
  (`elmo.learning.corrections`); the feedback-trainer's collectors also fine-tune a new nlu or
  sentiment head and put it through the promotion gate.
- Ratings of +1 -> each collector too, which keeps the rated message as a confident weak label when
  its head was sure of it (they join the next fine-tune that corrections start).

Nothing is published here: a promoted head is announced on elmo.model-updates by the registry,
from the feedback-trainer's corrections trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.interactions import InteractionStore, interaction_from_feedback
from elmo.learning.corrections import INTENT, SENTIMENT, CorrectionKind, WeakLabelConfig
from elmo.reply_bandit import Outcome, ReplyLearningStore, ReplyRecord, Reward
from elmo.runtime.stage import CoreResult, RejectedInput

log = logging.getLogger("elmo.feedback_trainer")

CORRECTION_KINDS = frozenset({FeedbackKind.INTENT_CORRECTED, FeedbackKind.SENTIMENT_CORRECTED})
REPLY_KINDS = (
    frozenset({FeedbackKind.REPLY_RATED, FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED, FeedbackKind.HANDOFF_OUTCOME})
    | CORRECTION_KINDS
)
# What an agent reports after a handoff, and whether the handoff reply did its job: the customer
# reached a person who resolved it, or not (they left first, or the agent found nothing a person
# was needed for and handed the conversation back).
HANDOFF_OUTCOMES = {"resolved": True, "abandoned": False, "returned_to_bot": False}


def reward_for(event: Feedback, reply: ReplyRecord | None) -> Reward | None:
    """The bandit reward a reaction is worth: a rating either way, a click or purchase a success."""
    if reply is None or not reply.strategy or not reply.variant:
        return None
    at = event.created_at.timestamp()
    if event.kind is FeedbackKind.REPLY_RATED and event.rating is not None:
        return Reward(event.event_id, event.user_id, reply.strategy, reply.variant, event.rating == 1, at, rate_limited=True)
    if event.kind in (FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED):
        return Reward(event.event_id, event.user_id, reply.strategy, reply.variant, True, at, rate_limited=False)
    if event.kind is FeedbackKind.HANDOFF_OUTCOME and event.outcome in HANDOFF_OUTCOMES:
        # From an agent's tool, not the customer: not capped like ratings.
        return Reward(event.event_id, event.user_id, reply.strategy, reply.variant, HANDOFF_OUTCOMES[event.outcome], at, rate_limited=False)
    return None


def unusable_handoff_outcome(event: Feedback) -> RejectedInput | None:
    """Why a `handoff_outcome` can never be learnt from (dead-lettered with this reason), or None."""
    if event.outcome not in HANDOFF_OUTCOMES:
        return RejectedInput(f"handoff outcome {event.outcome!r} is not one of {', '.join(HANDOFF_OUTCOMES)}")
    if not event.reply_event_id:
        return RejectedInput("a handoff outcome needs the reply_event_id of the reply that handed off")
    return None


class FeedbackLearningSettings(BaseSettings):
    """How reactions are counted: read by the feedback-trainer and by `elmo state rebuild`, which
    must count the same way for the rebuilt state to be the live one."""

    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    trainer_rated_per_user_per_hour: int = Field(
        10, ge=0, description="Most reply ratings of one user counted per hour (the rest are ignored: a guard against poisoning)."
    )
    trainer_corrections: bool = Field(
        True, description="Fine-tune the nlu and sentiment heads on agents' intent and sentiment corrections (through the promotion gate)."
    )
    trainer_corrections_per_user_per_hour: int = Field(
        5, ge=0, description="Most corrections of one kind from one user collected per hour (a flood from one account counts this many)."
    )
    trainer_weak_labels: bool = Field(
        True, description="Also fine-tune on confident weak labels: messages whose reply was rated +1 while the head was sure of them."
    )
    trainer_weak_label_min_confidence: float = Field(
        0.9, ge=0, le=1, description="Least nlu intent confidence of a rated +1 message for its intent to be a weak label."
    )
    trainer_weak_label_min_sentiment_score: float = Field(
        0.8, gt=0, le=1, description="Least |sentiment score| (on the side of a positive or negative label) for it to be a weak label; never neutral."
    )
    trainer_weak_labels_kept: int = Field(
        100, ge=1, description="Newest weak labels kept per head; a fine-tune started by corrections takes them all (weight 0.5)."
    )
    trainer_weak_labels_per_user_per_hour: int = Field(5, ge=0, description="Most weak labels of one kind from one user's ratings per hour.")


def weak_label_config(settings: FeedbackLearningSettings, kind: CorrectionKind) -> WeakLabelConfig | None:
    if not settings.trainer_weak_labels:
        return None
    thresholds = {INTENT: settings.trainer_weak_label_min_confidence, SENTIMENT: settings.trainer_weak_label_min_sentiment_score}
    return WeakLabelConfig(thresholds[kind], settings.trainer_weak_labels_kept, settings.trainer_weak_labels_per_user_per_hour)


class CorrectionsSink(Protocol):
    async def collect(self, events: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> list[CoreResult]: ...

    async def collect_weak_labels(self, ratings: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> None: ...


class TrainerMetrics:
    def __init__(self) -> None:
        self.rewards = Counter(
            "elmo_trainer_bandit_rewards", "Reply rewards by outcome (counted, already_counted, rate_limited, unknown_reply).", ["outcome"],
            registry=None,
        )  # fmt: skip

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.rewards)


class FeedbackLearner:
    def __init__(
        self,
        interactions: InteractionStore,
        learning: ReplyLearningStore,
        rated_per_user_per_hour: int,
        corrections: Mapping[FeedbackKind, CorrectionsSink] | None = None,
        metrics: TrainerMetrics | None = None,
        on_interactions: Callable[[int], None] | None = None,
    ) -> None:
        """`corrections` collects each kind of correction (a kind without a sink is not learnt from);
        `on_interactions` hears how many new interactions each batch recorded (the ALS refit trigger)."""
        self.interactions = interactions
        self.on_interactions = on_interactions
        self.learning = learning
        self.rated_per_user_per_hour = rated_per_user_per_hour
        self.corrections = dict(corrections or {})
        self.metrics = metrics or TrainerMetrics()

    async def learn(self, events: Sequence[Feedback]) -> list[CoreResult]:
        recorded = await self.interactions.record_many([i for i in map(interaction_from_feedback, events) if i is not None])
        if self.on_interactions is not None and recorded:
            self.on_interactions(recorded)
        about_replies = [e for e in events if e.kind in REPLY_KINDS and e.reply_event_id]
        replies = await self.learning.replies(e.reply_event_id for e in about_replies)  # type: ignore[misc]
        await self._reward(about_replies, replies)
        results: list[CoreResult] = [
            unusable_handoff_outcome(e) if e.kind is FeedbackKind.HANDOFF_OUTCOME else None for e in events
        ]
        position = {id(e): i for i, e in enumerate(events)}
        liked = [e for e in about_replies if e.kind is FeedbackKind.REPLY_RATED and e.rating == 1 and e.reply_event_id in replies]
        for kind, sink in self.corrections.items():
            corrections = [e for e in events if e.kind is kind]
            if corrections:
                for event, result in zip(corrections, await sink.collect(corrections, replies), strict=True):
                    results[position[id(event)]] = result
            if liked:
                await sink.collect_weak_labels(liked, replies)
        return results

    async def _reward(self, events: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> None:
        rewards = []
        for event in events:
            if event.kind in CORRECTION_KINDS:
                continue
            reward = reward_for(event, replies.get(event.reply_event_id or ""))
            if reward is not None:
                rewards.append(reward)
            elif event.kind is FeedbackKind.REPLY_RATED:
                self.metrics.rewards.labels("unknown_reply").inc()  # expired from the index, or never a reply
        outcomes = await self.learning.apply_rewards(rewards, self.rated_per_user_per_hour)
        for outcome in outcomes:
            self.metrics.rewards.labels(outcome.name.lower()).inc()
        limited = [r.user_id for r, o in zip(rewards, outcomes, strict=True) if o is Outcome.RATE_LIMITED]
        if limited:
            log.info("ratings over the hourly cap not counted", extra={"fields": {"users": sorted(set(limited)), "count": len(limited)}})
