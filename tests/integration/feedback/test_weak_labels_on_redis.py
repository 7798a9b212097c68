"""Confident weak labels on the real Redis: capped per user and once per rating, a buffer of the
newest, never a fine-tune of their own, and taken (minus what a correction contradicts) by the
fine-tune that corrections start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models.registry import Decision
from elmo.reply_bandit import ReplyRecord
from elmo.runtime.settings import ConnectionSettings
from elmo.learning.corrections import INTENT, SENTIMENT, Correction, CorrectionKind, WeakLabelConfig
from services.feedback_trainer.corrections import CorrectionTrainer

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def confident(n: int, text: str | None = None) -> ReplyRecord:
    return ReplyRecord(f"r-{n}", "order_status", "order_status:0", "order_status", text or f"where is my parcel {n}", "c1", f"u{n}", 0.97, "negative", -0.9)


def thumbs_up(user: str, reply_event_id: str, minutes: int = 0) -> Feedback:
    return Feedback(conversation_id="c1", user_id=user, channel="web", kind=FeedbackKind.REPLY_RATED, rating=1,
                    reply_event_id=reply_event_id, created_at=AT + timedelta(minutes=minutes))  # fmt: skip


def outcomes(trainer: CorrectionTrainer) -> dict[str, float]:
    samples = trainer.metrics.weak_labels.collect()[0].samples
    return {s.labels["outcome"]: s.value for s in samples if s.name.endswith("_total") and s.labels["model_kind"] == trainer.kind.model_kind}


def with_trainers(
    connections: ConnectionSettings,
    fine_tune: Callable[[Sequence[Correction], Sequence[Correction], Sequence[Correction]], Decision],
    test: Callable[[dict[str, CorrectionTrainer]], Awaitable[None]],
    kept: int = 10,
) -> None:
    prefix = f"test:learning:{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        def trainer(kind: CorrectionKind, threshold: float) -> CorrectionTrainer:
            return CorrectionTrainer(
                redis.Redis.from_url(connections.redis_url, decode_responses=True), fine_tune, kind=kind, prefix=prefix, batch=3,
                per_user_per_hour=5, applied_ttl_s=600, weak_labels=WeakLabelConfig(threshold, kept, per_user_per_hour=3),
            )  # fmt: skip

        trainers = {"intent": trainer(INTENT, 0.9), "sentiment": trainer(SENTIMENT, 0.8)}
        try:
            await test(trainers)
        finally:
            client = redis.Redis.from_url(connections.redis_url)
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
            for t in trainers.values():
                await t.close()

    asyncio.run(run())


def must_not_train(corrections: Sequence[Correction], weak_labels: Sequence[Correction], recent: Sequence[Correction] = ()) -> Decision:
    raise AssertionError(f"weak labels started a fine-tune ({len(corrections)} corrections, {len(weak_labels)} weak labels)")


def test_weak_labels_are_capped_per_user_kept_newest_and_never_start_a_fine_tune(connections: ConnectionSettings) -> None:
    async def test(trainers: dict[str, CorrectionTrainer]) -> None:
        intent, sentiment = trainers["intent"], trainers["sentiment"]
        replies = {f"r-{n}": confident(n) for n in range(20)}
        flood = [thumbs_up("fan", f"r-{n}") for n in range(10)]  # one user, one hour
        for trainer in trainers.values():
            await trainer.collect_weak_labels(flood, replies)
            await trainer.collect_weak_labels(flood, replies)  # redelivered: nothing more
        assert await intent.weak_labels_waiting() == await sentiment.weak_labels_waiting() == 3
        assert outcomes(intent) == outcomes(sentiment) == {"collected": 3, "rate_limited": 7, "already_counted": 10}
        # Many users: the buffer keeps the newest 10 and a trainer's timer finds no correction to train on.
        crowd = [thumbs_up(f"u{n}", f"r-{n}", minutes=n) for n in range(3, 20)]
        await intent.collect_weak_labels(crowd, replies)
        waiting = await intent.take_weak_labels()
        assert [w.feedback_event_id for w in waiting] == [e.event_id for e in crowd[-10:]]
        assert {w.label for w in waiting} == {"order_status"} and await intent.pending() == 0
        assert intent._training is None and intent.decisions == []
        # Not sure, or rated down: nothing kept.
        unsure = {"r-50": ReplyRecord("r-50", "greet", "greet:0", "greeting", "hey", "c1", "u50", 0.6, "neutral", 0.1)}
        down = thumbs_up("u50", "r-50").model_copy(update={"rating": -1})
        await intent.collect_weak_labels([thumbs_up("u50", "r-50"), down], unsure)
        await sentiment.collect_weak_labels([thumbs_up("u50", "r-50"), down], unsure)
        assert await intent.weak_labels_waiting() == 0 and await sentiment.weak_labels_waiting() == 3

    with_trainers(connections, must_not_train, test)


def test_a_fine_tune_started_by_corrections_takes_the_weak_labels_a_correction_does_not_contradict(connections: ConnectionSettings) -> None:
    seen: list[tuple[list[str], list[str]]] = []

    def fine_tune(corrections: Sequence[Correction], weak_labels: Sequence[Correction], recent: Sequence[Correction] = ()) -> Decision:
        seen.append(([c.label for c in corrections], [w.text for w in weak_labels]))
        return Decision(INTENT.model_kind, "v-2", promoted=False, reason="test")

    async def test(trainers: dict[str, CorrectionTrainer]) -> None:
        intent = trainers["intent"]
        replies = {"r-1": confident(1, "my order never came"), "r-2": confident(2, "where is my parcel"), "r-3": confident(3)}
        await intent.collect_weak_labels([thumbs_up(f"u{n}", f"r-{n}") for n in (1, 2, 3)], replies)
        # An agent says the first message was a complaint: the correction wins.
        corrections = [Feedback(conversation_id="c1", user_id="agent", channel="web", kind=FeedbackKind.INTENT_CORRECTED,
                                reply_event_id="r-1", corrected_label="complaint", event_id=f"fb-c{n}") for n in range(3)]  # fmt: skip
        await intent.collect(corrections, replies)
        await intent._training  # type: ignore[misc]
        assert seen == [(["complaint"] * 3, ["where is my parcel", "where is my parcel 3"])]
        assert outcomes(intent) == {"collected": 3, "used": 2, "contradicted": 1}
        assert await intent.weak_labels_waiting() == 0 and await intent.pending() == 0

    with_trainers(connections, fine_tune, test)


def test_a_failed_fine_tune_puts_its_weak_labels_back(connections: ConnectionSettings) -> None:
    def failing(corrections: Sequence[Correction], weak_labels: Sequence[Correction], recent: Sequence[Correction] = ()) -> Decision:
        raise RuntimeError("out of memory")

    async def test(trainers: dict[str, CorrectionTrainer]) -> None:
        sentiment = trainers["sentiment"]
        replies = {f"r-{n}": confident(n) for n in range(3)}
        await sentiment.collect_weak_labels([thumbs_up(f"u{n}", f"r-{n}") for n in range(3)], replies)
        corrections = [Feedback(conversation_id="c1", user_id="agent", channel="web", kind=FeedbackKind.SENTIMENT_CORRECTED,
                                reply_event_id="r-0", corrected_label="neutral") for _ in range(3)]  # fmt: skip
        await sentiment.collect(corrections, replies)
        await sentiment._training  # type: ignore[misc]
        # The contradicted one (r-0's text is "neutral" to the agent) is gone; the other two wait again.
        assert await sentiment.pending() == 3
        assert [w.text for w in await sentiment.take_weak_labels()] == ["where is my parcel 1", "where is my parcel 2"]

    with_trainers(connections, failing, test)
