"""The feedback-trainer service: elmo.feedback -> interaction store and reply-bandit counts (Redis),
and intent corrections -> a fine-tuned nlu head, announced on elmo.model-updates by the model
registry when it passes the promotion gate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio.to_thread
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from elmo.contracts import topics
from elmo.contracts.events import Feedback
from elmo.interactions import InteractionStore
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import LazyEmbedder
from elmo.models.registry import ModelRegistry
from elmo.reply_bandit import ReplyLearningStore
from elmo.runtime import Stage, run_stage
from elmo.runtime.model_updates import KafkaAnnouncer
from services.feedback_trainer.core import FeedbackLearner, TrainerMetrics
from services.feedback_trainer.corrections import CorrectionMetrics, CorrectionTrainer, FineTuneConfig, HeadFineTuner
from services.feedback_trainer.refit import RefitMetrics, Refitter, RefitTrigger, refit_from_log
from services.feedback_trainer.settings import FeedbackTrainerSettings
from elmo.models.intent_model import held_out_evaluator


def build_corrections(settings: FeedbackTrainerSettings, metrics: CorrectionMetrics) -> CorrectionTrainer:
    registry = ModelRegistry(
        ArtifactStore(settings.model_store),
        KafkaAnnouncer(settings.kafka_bootstrap_servers, settings.model_updates_topic),
        settings.promotion_tolerance,
    )
    config = FineTuneConfig(epochs=settings.trainer_fine_tune_epochs, replay_examples=settings.trainer_replay_examples)
    # MiniLM loads on the first fine-tune, not at start: most trainers see no correction for a while.
    embedder = LazyEmbedder(threads=settings.model_threads)
    tuner = HeadFineTuner(registry, embedder, lambda: held_out_evaluator(embedder=embedder), config)
    return CorrectionTrainer(
        redis.Redis.from_url(settings.redis_url, decode_responses=True),
        tuner,
        prefix=settings.learning_key_prefix,
        batch=settings.trainer_corrections_batch,
        per_user_per_hour=settings.trainer_corrections_per_user_per_hour,
        applied_ttl_s=settings.reply_index_ttl_s,
        metrics=metrics,
    )


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
    timer: asyncio.Task | None = None
    refitter: Refitter | None = None
    refit_timer: asyncio.Task | None = None
    metrics, correction_metrics, refit_metrics = TrainerMetrics(), CorrectionMetrics(), RefitMetrics()

    async def open_stores() -> None:
        nonlocal learner, timer, refitter, refit_timer
        corrections = None
        if settings.trainer_refit:
            refitter = build_refitter(settings, refit_metrics)
            refit_timer = asyncio.get_running_loop().create_task(refitter.run_timer())
        if settings.trainer_corrections:
            corrections = await anyio.to_thread.run_sync(build_corrections, settings, correction_metrics)
            timer = asyncio.get_running_loop().create_task(corrections.run_timer(settings.trainer_corrections_interval_s))
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
        if timer is not None:
            timer.cancel()
        if refit_timer is not None:
            refit_timer.cancel()
        if refitter is not None:
            await refitter.close()
        if learner is not None:
            if isinstance(learner.corrections, CorrectionTrainer):
                await learner.corrections.close()
            await learner.interactions.close()
            await learner.learning.close()

    def register_metrics(registry: CollectorRegistry) -> None:
        metrics.register(registry)
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
        description="Interactions for the recommender (and ALS refits from the log), rewards for the reply bandit, corrections for the nlu head.",
    )


def main() -> None:
    settings = FeedbackTrainerSettings()
    run_stage(build_stage(settings), settings)
