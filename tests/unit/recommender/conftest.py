"""A small catalog (fixtures/catalog.json), real MiniLM item vectors, and ALS fitted on simulated
shoppers over that catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from elmo.brand.catalog import Catalog, load_catalog
from elmo.contracts.events import DialogueContext, Entity, Intent, Sentiment, SentimentScored
from elmo.models.embeddings import SentenceEmbedder
from services.recommender.als_model import AlsModel, AlsParams
from services.recommender.content import item_embeddings
from services.recommender.core import Recommender
from services.recommender.item_index import ItemIndex
from services.recommender.simulation import SimulationParams, simulate

CATALOG = Path(__file__).parent / "fixtures" / "catalog.json"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(CATALOG)


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@pytest.fixture(scope="session")
def vectors(catalog: Catalog, embedder: SentenceEmbedder) -> np.ndarray:
    return item_embeddings(catalog, embedder, None)


@pytest.fixture(scope="session")
def als(catalog: Catalog) -> AlsModel:
    # Few factors for 13 items: with as many factors as items ALS reproduces the matrix and its
    # item factors stop reflecting what is bought together.
    return AlsModel.fit(simulate(catalog, SimulationParams(users=3000, seed=5)), AlsParams(factors=4))


@pytest.fixture
def content_only(catalog: Catalog, vectors: np.ndarray) -> Recommender:
    return Recommender(ItemIndex(catalog), vectors, None, top_k=3)


@pytest.fixture
def with_als(catalog: Catalog, vectors: np.ndarray, als: AlsModel) -> Recommender:
    return Recommender(ItemIndex(catalog), vectors, als, top_k=3)


def entity(kind: str, value: str, normalized: str | None = None) -> Entity:
    return Entity(type=kind, value=value, start=0, end=len(value), normalized=normalized or value)


def scored(
    text: str = "what would you recommend?",
    intent: str = "recommendation_request",
    entities: list[Entity] | None = None,
    sentiment: str = "neutral",
    user: str = "u1",
    event_id: str | None = None,
    **context: object,
) -> SentimentScored:
    extra = {"event_id": event_id} if event_id else {}
    return SentimentScored(
        conversation_id="c-" + user,
        user_id=user,
        channel="web",
        text=text,
        source="text",
        intent=Intent(name=intent, confidence=0.9),
        entities=entities or [],
        context=DialogueContext(**context),
        sentiment=Sentiment(label=sentiment, score={"negative": -0.7, "neutral": 0.0, "positive": 0.7}[sentiment]),
        **extra,
    )


@pytest.fixture
def query(embedder: SentenceEmbedder) -> Callable[[str], np.ndarray]:
    return lambda text: embedder.encode([text])[0]
