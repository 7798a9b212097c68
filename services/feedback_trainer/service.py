"""The feedback-trainer service: elmo.feedback -> (interaction store in Redis); emits to
elmo.model-updates only once it refits models, which it does not do yet."""

from __future__ import annotations

from collections.abc import Sequence

from elmo.contracts import topics
from elmo.contracts.events import Feedback
from elmo.interactions import InteractionStore
from elmo.runtime import Stage, run_stage
from services.feedback_trainer.core import record_feedback
from services.feedback_trainer.settings import FeedbackTrainerSettings


def build_stage(settings: FeedbackTrainerSettings) -> Stage:
    store: InteractionStore | None = None

    def open_store() -> None:
        nonlocal store
        store = InteractionStore.from_url(settings.redis_url, settings)

    async def record(events: Sequence[Feedback]):  # noqa: ANN202
        assert store is not None, "store not open"
        return await record_feedback(events, store)

    async def close() -> None:
        if store is not None:
            await store.close()

    return Stage(
        name="feedback-trainer",
        consumes=topics.FEEDBACK,
        emits=topics.MODEL_UPDATES,
        input_type=Feedback,
        process_batch=record,
        on_start=open_store,
        on_stop=close,
        description="Records views, clicks and purchases of recommended items for the recommender.",
    )


def main() -> None:
    settings = FeedbackTrainerSettings()
    run_stage(build_stage(settings), settings)
