"""The recommender service: elmo.sentiments -> elmo.recommendations (items, reasons, tracking links).

Per batch: the users' interaction histories and the popularity counters from Redis (what the
feedback-trainer recorded seconds ago counts now), then the pure core in a worker thread.
Without an ALS artefact in the model store it serves content + popularity ("content-only").
MiniLM is loaded only if an event arrives without nlu's embedding (or the item vectors are not
in the model store's cache yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import anyio.to_thread
import numpy as np
from threadpoolctl import threadpool_limits

from elmo.brand.catalog import load_catalog
from elmo.contracts import topics
from elmo.contracts.events import SentimentScored
from elmo.interactions import InteractionStore
from elmo.learning.state_epoch import StateWatch
from elmo.models.artifacts import ArtifactStore, NoModelVersion
from elmo.runtime import ModelSlot, Stage, run_stage
from services.recommender.als_model import MODEL_KIND, AlsModel
from elmo.models.embeddings import LazyEmbedder
from services.recommender.content import Embedder, item_embeddings
from services.recommender.core import BatchInputs, BlendWeights, Recommender, query_embeddings, recommend_batch
from services.recommender.item_index import ItemIndex
from services.recommender.settings import RecommenderSettings

log = logging.getLogger("elmo.recommender")


class PopularityReader:
    """The decayed popularity counters, read at most once per `refresh_s` (they move slowly)."""

    def __init__(self, store: InteractionStore, recommender: Recommender, refresh_s: float) -> None:
        self.store, self.recommender, self.refresh_s = store, recommender, refresh_s
        self._vector: np.ndarray | None = None
        self._read_at = -float("inf")

    async def read(self) -> np.ndarray:
        if self._vector is None or time.monotonic() - self._read_at >= self.refresh_s:
            self._vector = self.recommender.popularity_vector(await self.store.popularity())
            self._read_at = time.monotonic()
        return self._vector


class RecommenderFactory:
    """Builds a `Recommender` around one ALS version; the catalog index and item vectors are shared."""

    def __init__(self, settings: RecommenderSettings, embedder: Embedder) -> None:
        catalog = load_catalog()
        self.settings = settings
        self.index = ItemIndex(catalog)
        self.item_vectors = item_embeddings(catalog, embedder, settings.model_store)
        self.weights = BlendWeights(
            settings.recommender_cf_weight, settings.recommender_content_weight, settings.recommender_popularity_weight
        )

    def build(self, version: str | None = None) -> Recommender:
        try:
            model: AlsModel | None = AlsModel.load(ArtifactStore(self.settings.model_store), version)
        except NoModelVersion:
            if version is not None:
                raise
            log.warning("no ALS model in the store: serving content + popularity",
                        extra={"fields": {"store": str(self.settings.model_store)}})
            model = None
        return Recommender(self.index, self.item_vectors, model, self.weights, self.settings, self.settings.recommender_top_k)


def build_recommender(settings: RecommenderSettings, embedder: Embedder) -> Recommender:
    return RecommenderFactory(settings, embedder).build()


def build_stage(settings: RecommenderSettings) -> Stage:
    """The ALS model is hot-swappable: the runtime loads versions announced on elmo.model-updates."""
    embedder: LazyEmbedder | None = None
    factory: RecommenderFactory | None = None
    interactions: InteractionStore | None = None
    popularity: dict[str, PopularityReader] = {}
    # Histories lost from Redis would make every user a stranger without a word: say so (the
    # feedback-trainer, the writer, marks the state; this reader only reports).
    state = StateWatch.from_url(
        settings.redis_url, settings.kafka_bootstrap_servers, [settings.interactions_key_prefix], settings.interactions_key_prefix,
        service="recommender", writer=False, interval_s=settings.state_check_interval_s,
    )  # fmt: skip
    state_timer: asyncio.Task | None = None

    async def open_clients() -> None:
        nonlocal interactions, state_timer
        interactions = InteractionStore.from_url(settings.redis_url, settings)
        await state.start_soon()
        state_timer = asyncio.get_running_loop().create_task(state.run())

    def load_model(version: str | None) -> tuple[Recommender, str]:
        nonlocal embedder, factory
        if factory is None:
            # The blend's products are small (items x 384): one BLAS thread is as fast on an idle
            # machine and far steadier on a busy one (tests/load/bench_recommender.py on a loaded
            # 2-core box, 10,000 items: p99 3.3-4.8 ms with one thread, 36-42 ms with two).
            threadpool_limits(1, "blas")
            embedder = LazyEmbedder(threads=settings.model_threads)
            factory = RecommenderFactory(settings, embedder)
        recommender = factory.build(version)
        return recommender, recommender.version

    async def recommend(events: Sequence[SentimentScored], recommender: Recommender):  # noqa: ANN202
        assert interactions is not None, "on_start opens the clients"
        reader = popularity.get(recommender.version)
        if reader is None:  # popularity is mapped onto this model's items
            reader = popularity.setdefault(
                recommender.version, PopularityReader(interactions, recommender, settings.recommender_popularity_refresh_s)
            )
        histories = await interactions.histories(e.user_id for e in events)
        popular = await reader.read()

        def decide():  # noqa: ANN202 - CPU work (embeddings when nlu's cannot be reused, the blend)
            inputs = BatchInputs(histories, popular, query_embeddings(events, embedder))
            return recommend_batch(events, recommender, inputs)

        return await anyio.to_thread.run_sync(decide)

    async def close() -> None:
        if state_timer is not None:
            state_timer.cancel()
        await state.close()
        if interactions is not None:
            await interactions.close()

    return Stage(
        name="recommender",
        consumes=topics.SENTIMENTS,
        emits=topics.RECOMMENDATIONS,
        input_type=SentimentScored,
        process_batch=recommend,
        model=ModelSlot(MODEL_KIND),
        load_model=load_model,
        on_start=open_clients,
        on_stop=close,
        register_metrics=state.register,
        description="Items worth suggesting, each with a reason and a signed tracking link.",
    )


def main() -> None:
    settings = RecommenderSettings()
    run_stage(build_stage(settings), settings)
