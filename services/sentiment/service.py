"""The sentiment service: elmo.understandings -> elmo.sentiments (label and score).

The sentiment head is hot-swappable: the runtime loads it with `load_model`, hands it to `score`
with every batch and swaps in versions announced on elmo.model-updates.
"""

from __future__ import annotations

from elmo.contracts import topics
from elmo.contracts.events import Understanding
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import Evaluator
from elmo.models.sentiment_model import MODEL_KIND, SentimentModel, load_sentiment_model
from elmo.models.sentiment_model import held_out_evaluator as sentiment_held_out_evaluator
from elmo.runtime import ModelSlot, Stage, run_stage
from services.sentiment.core import score_batch
from services.sentiment.settings import SentimentSettings


def build_stage(settings: SentimentSettings) -> Stage:
    embedder: SentenceEmbedder | None = None

    def load_model(version: str | None) -> tuple[SentimentModel, str]:
        nonlocal embedder
        if embedder is None:  # the encoder is shared by every head version
            embedder = SentenceEmbedder(threads=settings.model_threads)
        found = ArtifactStore(settings.model_store).get_or_current(MODEL_KIND, version)
        return load_sentiment_model(found, embedder), found.version

    def score(events: list[Understanding], model: SentimentModel):  # noqa: ANN202 - CPU work: the runtime runs it in a thread
        return score_batch(events, model)

    return Stage(
        name="sentiment",
        consumes=topics.UNDERSTANDINGS,
        emits=topics.SENTIMENTS,
        input_type=Understanding,
        process_batch=score,
        model=ModelSlot(MODEL_KIND),
        load_model=load_model,
        description="Sentiment label and score.",
    )


def held_out_evaluator(settings: SentimentSettings | None = None) -> Evaluator:
    """The promotion gate's judge for this service's settings (see `elmo.models.sentiment_model`)."""
    settings = settings or SentimentSettings()
    return sentiment_held_out_evaluator(settings.model_threads)


def main() -> None:
    settings = SentimentSettings()
    run_stage(build_stage(settings), settings)
