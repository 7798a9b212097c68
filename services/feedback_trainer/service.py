"""The feedback-trainer service: elmo.feedback -> interaction store and reply-bandit counts (Redis),
and intent and sentiment corrections (with confident weak labels from +1 ratings) -> a fine-tuned
nlu or sentiment head, announced on elmo.model-updates by the model registry when it passes the
promotion gate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio.to_thread
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind
from elmo.interactions import InteractionStore
from elmo.learning.corrections import CORRECTION_KINDS, INTENT, CorrectionMetrics, legacy_pending_key
from elmo.learning.feedback import FeedbackLearner, TrainerMetrics, weak_label_config
from elmo.learning.state_epoch import StateWatch
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import LazyEmbedder
from elmo.models.registry import ModelRegistry
from elmo.reply_bandit import ReplyLearningStore
from elmo.runtime import Stage, run_stage
from elmo.runtime.model_updates import KafkaAnnouncer
from services.feedback_trainer.corrections import CorrectionTrainer, FineTuneConfig, HeadFineTuner
from services.feedback_trainer.refit import RefitMetrics, Refitter, RefitTrigger, refit_from_log
from services.feedback_trainer.settings import FeedbackTrainerSettings


def build_corrections(settings: FeedbackTrainerSettings, metrics: CorrectionMetrics) -> dict[FeedbackKind, CorrectionTrainer]:
    """One trainer per kind of correction (intent, sentiment); they share the registry and the encoder."""
    registry = ModelRegistry(
        ArtifactStore(settings.model_store),
        KafkaAnnouncer(settings.kafka_bootstrap_servers, settings.model_updates_topic),
        settings.promotion_tolerance,
    )
    config = FineTuneConfig(epochs=settings.trainer_fine_tune_epochs, replay_examples=settings.trainer_replay_examples)
    # MiniLM loads on the first fine-tune, not at start: most trainers see no correction for a while.
    embedder = LazyEmbedder(threads=settings.model_threads)
    return {
        kind.feedback: CorrectionTrainer(
            redis.Redis.from_url(settings.redis_url, decode_responses=True),
            HeadFineTuner(kind, registry, embedder, config),
            kind=kind,
            prefix=settings.learning_key_prefix,
            batch=settings.trainer_corrections_batch,
            per_user_per_hour=settings.trainer_corrections_per_user_per_hour,
            applied_ttl_s=settings.reply_index_ttl_s,
            metrics=metrics,
            weak_labels=weak_label_config(settings, kind),
        )
        for kind in CORRECTION_KINDS
    }


def build_refitter(settings: FeedbackTrainerSettings, metrics: RefitMetrics) -> Refitter:
    registry = ModelRegistry(
        ArtifactStore(settings.model_store),
        KafkaAnnouncer(settings.kafka_bootstrap_servers, settings.model_updates_topic),
        settings.promotion_tolerance,
    )
    refit = refit_from_log(registry, settings.kafka_bootstrap_servers, settings.trainer_refit_seed, topics.FEEDBACK.name)
    return Refitter(refit, RefitTrigger(settings.trainer_refit_after, settings.trainer_refit_interval_s), metrics)


def build_stage(settings: FeedbackTrainerSettings) -> Stage:
    learner: FeedbackLearner | None = None
    corrections: dict[FeedbackKind, CorrectionTrainer] = {}
    timers: list[asyncio.Task] = []
    refitter: Refitter | None = None
    refit_timer: asyncio.Task | None = None
    metrics, correction_metrics, refit_metrics = TrainerMetrics(), CorrectionMetrics(), RefitMetrics()
    # The trainer writes the learnt state: it marks it whole, and warns when Redis lost it.
    state = StateWatch.from_url(
        settings.redis_url, settings.kafka_bootstrap_servers, [settings.interactions_key_prefix, settings.learning_key_prefix],
        settings.interactions_key_prefix, service="feedback-trainer", writer=True, interval_s=settings.state_check_interval_s,
    )  # fmt: skip

    async def open_stores() -> None:
        nonlocal learner, refitter, refit_timer
        await state.start_soon()
        timers.append(asyncio.get_running_loop().create_task(state.run()))
        if settings.trainer_refit:
            refitter = build_refitter(settings, refit_metrics)
            refit_timer = asyncio.get_running_loop().create_task(refitter.run_timer())
        if settings.trainer_corrections:
            corrections.update(await anyio.to_thread.run_sync(build_corrections, settings, correction_metrics))
            await corrections[INTENT.feedback].adopt_pending(legacy_pending_key(settings.learning_key_prefix))
            for trainer in corrections.values():
                timers.append(asyncio.get_running_loop().create_task(trainer.run_timer(settings.trainer_corrections_interval_s)))
        learner = FeedbackLearner(
            InteractionStore.from_url(settings.redis_url, settings),
            ReplyLearningStore.from_url(settings.redis_url, settings),
            settings.trainer_rated_per_user_per_hour,
            corrections=corrections,
            metrics=metrics,
            on_interactions=refitter.record if refitter is not None else None,
        )

    async def learn(events: Sequence[Feedback]):  # noqa: ANN202
        assert learner is not None, "stores not open"
        return await learner.learn(events)

    async def close() -> None:
        for timer in timers:
            timer.cancel()
        if refit_timer is not None:
            refit_timer.cancel()
        if refitter is not None:
            await refitter.close()
        for trainer in corrections.values():
            await trainer.close()
        if learner is not None:
            await learner.interactions.close()
            await learner.learning.close()
        await state.close()

    def register_metrics(registry: CollectorRegistry) -> None:
        metrics.register(registry)
        state.register(registry)
        correction_metrics.register(registry)
        refit_metrics.register(registry)

    return Stage(
        name="feedback-trainer",
        consumes=topics.FEEDBACK,
        emits=topics.MODEL_UPDATES,
        input_type=Feedback,
        process_batch=learn,
        on_start=open_stores,
        on_stop=close,
        register_metrics=register_metrics,
        description="Interactions for the recommender (and ALS refits from the log), rewards for the reply bandit, corrections for the nlu and sentiment heads.",
    )


def main() -> None:
    settings = FeedbackTrainerSettings()
    run_stage(build_stage(settings), settings)
