"""The sentiment core with the real embedding model and a head trained here on a few examples."""

import numpy as np
import pytest

from elmo.contracts.events import Intent, InboundMessage, Understanding, Utterance
from elmo.models.classifier import EmbeddingClassifier, HeadConfig
from elmo.models.embeddings import SentenceEmbedder, vector_to_b64
from services.sentiment.core import embeddings_for, score_batch
from elmo.models.sentiment_model import LABELS, SentimentModel, features, label_for_rating

TRAIN = [
    ("i love it, thank you so much!", "positive"), ("amazing service 😍", "positive"), ("great, works perfectly", "positive"),
    ("this is terrible, i want my money back", "negative"), ("worst order ever 😡", "negative"), ("still broken, so angry", "negative"),
    ("do you ship to spain?", "neutral"), ("size M please", "neutral"), ("what time do you open", "neutral"),
]


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    embedder = SentenceEmbedder()
    texts = [t for t, _ in TRAIN]
    head = EmbeddingClassifier.fit(features(embedder.encode(texts), texts), [l for _, l in TRAIN], list(LABELS), HeadConfig(hidden=32, epochs=80))
    return SentimentModel(embedder, head, "test-version")


def understanding(text: str, embedding: np.ndarray | None = None, embedding_model: str | None = None) -> Understanding:
    inbound = InboundMessage(conversation_id="c1", user_id="u1", channel="web", text=text)
    utterance = inbound.derive(Utterance, text=text, source="text")
    return utterance.derive(
        Understanding, intent=Intent(name="thanks", confidence=0.9),
        embedding_b64=None if embedding is None else vector_to_b64(embedding), embedding_model=embedding_model,
    )


def test_scores_carry_label_score_version_and_lineage(model):
    happy, angry = score_batch([understanding("thank you, i love it"), understanding("so angry, this is terrible")], model)
    assert happy.sentiment.label == "positive" and happy.sentiment.score > 0
    assert angry.sentiment.label == "negative" and angry.sentiment.score < 0
    assert happy.sentiment.model_version == "test-version" and happy.intent.name == "thanks"
    assert happy.origin_event_id == happy.parent_event_id or happy.parent_event_id


def test_nlu_embeddings_are_reused_only_when_they_come_from_the_same_model(model):
    text = "thank you, i love it"
    own = model.embedder.encode([text])[0]
    reused_events = [understanding(text, own, model.embedder.version)]
    foreign_events = [understanding(text, np.zeros(384, dtype=np.float32), "some-other-model")]
    reused, computed_reused = embeddings_for(reused_events, model)
    recomputed, computed_foreign = embeddings_for(foreign_events, model)
    assert computed_reused == 0 and computed_foreign == 1
    assert np.allclose(reused[0], own) and np.allclose(recomputed[0], own, atol=1e-5)


def test_rating_thresholds():
    assert [label_for_rating(r) for r in (2.0, 0.5, 0.4, -0.4, -0.5, -3)] == ["positive", "positive", "neutral", "neutral", "negative", "negative"]
