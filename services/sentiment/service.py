"""The sentiment service: elmo.understandings -> elmo.sentiments (label and score).

The sentiment head is hot-swappable: the runtime loads it with `load_model`, hands it to `score`
with every batch and swaps in versions announced on elmo.model-updates.
"""

from __future__ import annotations

from elmo.contracts import topics
from elmo.contracts.events import Understanding
from elmo.models.artifacts import ArtifactStore, ModelVersion
from elmo.models.classifier import EmbeddingClassifier
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import Evaluator
from elmo.runtime import ModelSlot, Stage, run_stage
from services.sentiment.core import score_batch
from services.sentiment.sentiment_model import MODEL_KIND, SentimentModel, evaluate, read_brand_examples
from services.sentiment.settings import SentimentSettings


def sentiment_model(version: ModelVersion, embedder: SentenceEmbedder) -> SentimentModel:
    trained_with = version.meta.get("embedding_model")
    if trained_with not in (None, embedder.version):
        raise ValueError(f"{MODEL_KIND} {version.version} was trained on {trained_with} embeddings, this service has {embedder.version}")
    return SentimentModel(embedder, EmbeddingClassifier.load(version.path), version.version)


def build_stage(settings: SentimentSettings) -> Stage:
    embedder: SentenceEmbedder | None = None

    def load_model(version: str | None) -> tuple[SentimentModel, str]:
        nonlocal embedder
        if embedder is None:  # the encoder is shared by every head version
            embedder = SentenceEmbedder(threads=settings.model_threads)
        found = ArtifactStore(settings.model_store).get_or_current(MODEL_KIND, version)
        return sentiment_model(found, embedder), found.version

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
    """The promotion gate's judge: accuracy on the held-out brand examples (no downloaded data needed)."""
    settings = settings or SentimentSettings()
    embedder = SentenceEmbedder(threads=settings.model_threads)
    held_out = [e for e in read_brand_examples() if e.split == "test"]

    def judge(version: ModelVersion) -> dict[str, float]:
        report = evaluate(sentiment_model(version, embedder), held_out)["brand"]["model"]
        return {"brand_accuracy": report["accuracy"], "brand_macro_f1": report["macro_f1"]}

    return Evaluator("brand_accuracy", judge, f"held-out brand examples of brand_examples.jsonl ({len(held_out)} messages)")


def main() -> None:
    settings = SentimentSettings()
    run_stage(build_stage(settings), settings)
