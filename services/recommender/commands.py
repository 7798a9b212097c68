"""What `elmo train recommender` and `elmo recommend` do, callable without the command line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any, Literal

from elmo.brand.catalog import Catalog, load_catalog
from elmo.contracts.events import Channel, DialogueContext, Entity, Intent, Sentiment, SentimentScored
from elmo.interactions import InteractionStore
from elmo.models.artifacts import ArtifactStore, ModelVersion
from elmo.models.embeddings import SentenceEmbedder
from services.recommender.als_model import AlsParams, Evaluation, InteractionLog, fit_and_evaluate
from services.recommender.core import RecommendationRequest
from services.recommender.service import build_recommender
from services.recommender.settings import RecommenderSettings
from services.recommender.simulation import SimulationParams, simulate

Source = Literal["simulated", "redis"]


def catalog_digest(catalog: Catalog) -> str:
    return hashlib.sha256(json.dumps([item.model_dump() for item in catalog.items], sort_keys=True).encode()).hexdigest()


def interactions_from_redis(redis_url: str, catalog: Catalog) -> InteractionLog:
    async def read() -> InteractionLog:
        store = InteractionStore.from_url(redis_url)
        try:
            return InteractionLog.from_histories(await store.all_histories(), [item.id for item in catalog.items])
        finally:
            await store.close()

    return asyncio.run(read())


def train(
    store: ArtifactStore,
    source: Source = "simulated",
    seed: int = 13,
    users: int = 5000,
    redis_url: str = "redis://127.0.0.1:6379/0",
    threads: int = 1,
    make_current: bool = True,
) -> tuple[ModelVersion, Evaluation]:
    """Fit ALS on simulated shoppers or on the interactions recorded in Redis; evaluate hit-rate@10
    on each user's held-out last purchase against popularity; save the model fitted on all."""
    catalog = load_catalog()
    trained_on: dict[str, Any] = {"source": source}
    if source == "simulated":
        log = simulate(catalog, SimulationParams(users=users, seed=seed))
        trained_on |= {"users": users, "seed": seed}
    else:
        log = interactions_from_redis(redis_url, catalog)
        trained_on |= {"users": len(log.user_ids)}
    if len(log) == 0:
        raise ValueError(f"no interactions to learn from ({source})")
    started = time.perf_counter()
    params = AlsParams(seed=seed)
    model, evaluation = fit_and_evaluate(log, params, threads)
    meta = {
        "trained_on": trained_on,
        "interactions": len(log),
        "catalog_sha256": catalog_digest(catalog),
        "fit_seconds": round(time.perf_counter() - started, 2),
        "metrics": evaluation.as_metrics(),
    }
    return model.save(store, meta, make_current=make_current), evaluation


def recommend_text(
    user_id: str, text: str, entities: Sequence[Entity], settings: RecommenderSettings
) -> list[dict[str, Any]]:
    """Top-k for one message of one user, with the user's interactions from Redis; the message is
    taken as a recommendation request (no intent model), with the entities given."""
    embedder = SentenceEmbedder(threads=settings.model_threads)
    recommender = build_recommender(settings, embedder)

    async def read():  # noqa: ANN202
        store = InteractionStore.from_url(settings.redis_url, settings)
        try:
            return await store.history(user_id), await store.popularity()
        finally:
            await store.close()

    history, popularity = asyncio.run(read())
    focus = next((e.normalized for e in entities if e.type == "product" and e.normalized), None)
    event = SentimentScored(
        conversation_id=f"cli-{user_id}",
        user_id=user_id,
        channel=Channel.OTHER,
        text=text,
        source="text",
        intent=Intent(name="recommendation_request", confidence=1.0),
        entities=list(entities),
        context=DialogueContext(product_in_focus=focus),
        sentiment=Sentiment(label="neutral", score=0.0),
    )
    request = RecommendationRequest(event, history, recommender.popularity_vector(popularity), embedder.encode([text])[0])
    return [
        {"model": recommender.version, **recommendation.model_dump(exclude={"tracking_id"})}
        for recommendation in recommender.recommend(request)
    ]
