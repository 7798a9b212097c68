"""The sentiment service: elmo.understandings -> elmo.sentiments (label and score)."""

from __future__ import annotations

from elmo.contracts import topics
from elmo.contracts.events import Understanding
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.runtime import ModelSlot, Stage, run_stage
from services.sentiment.core import score_batch
from services.sentiment.sentiment_model import MODEL_KIND, SentimentModel
from services.sentiment.settings import SentimentSettings


def build_stage(settings: SentimentSettings) -> Stage:
    slot = ModelSlot(MODEL_KIND)
    model: SentimentModel | None = None

    def load() -> None:
        nonlocal model
        model = SentimentModel.load(ArtifactStore(settings.model_store), SentenceEmbedder(threads=settings.model_threads))
        slot.set_loaded(model.version)

    def score(events: list[Understanding]):  # noqa: ANN202 - CPU work: the runtime runs it in a thread
        assert model is not None, "model not loaded"
        return score_batch(events, model)

    return Stage(
        name="sentiment",
        consumes=topics.UNDERSTANDINGS,
        emits=topics.SENTIMENTS,
        input_type=Understanding,
        process_batch=score,
        model=slot,
        on_start=load,
        description="Sentiment label and score.",
    )


def main() -> None:
    settings = SentimentSettings()
    run_stage(build_stage(settings), settings)
