"""What the service hands the core: nlu's embedding when it can be reused, the model it found."""

import numpy as np

from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import vector_to_b64
from services.recommender.als_model import AlsModel, AlsParams
from services.recommender.core import query_embeddings
from services.recommender.service import build_recommender
from services.recommender.settings import RecommenderSettings
from services.recommender.simulation import SimulationParams, simulate
from tests.unit.recommender.conftest import scored


def test_nlu_embeddings_are_reused_only_from_the_same_model(embedder):
    text = "warm shoes for hiking"
    own = embedder.encode([text])[0]
    marker = np.full(384, 0.05, dtype=np.float32)
    reused = scored(text).model_copy(update={"embedding_b64": vector_to_b64(marker), "embedding_model": embedder.version})
    foreign = scored(text).model_copy(update={"embedding_b64": vector_to_b64(marker), "embedding_model": "another-model"})
    missing = scored(text)
    first, second, third = query_embeddings([reused, foreign, missing], embedder)
    assert np.array_equal(first, marker)
    assert np.allclose(second, own, atol=1e-5) and np.allclose(third, own, atol=1e-5)
    assert query_embeddings([missing], None) == [None]


def test_the_service_serves_content_only_until_an_als_model_is_in_the_store(embedder, tmp_path):
    settings = RecommenderSettings(model_store=tmp_path, recommender_top_k=2)
    content_only = build_recommender(settings, embedder)
    assert content_only.version == "content-only" and content_only.top_k == 2
    catalog = content_only.index.catalog
    version = AlsModel.fit(simulate(catalog, SimulationParams(users=300, seed=1)), AlsParams(factors=8)).save(ArtifactStore(tmp_path), {})
    with_model = build_recommender(settings, embedder)
    assert with_model.version == version.version
    # The item vectors were cached at the first start and reused by the second.
    assert np.array_equal(with_model.embeddings, content_only.embeddings)
    assert len(list((tmp_path / "recommender-item-embeddings").glob("*.npy"))) == 1


def test_the_lazy_embedder_names_the_same_model_and_loads_only_when_it_must(embedder, catalog, tmp_path):
    from elmo.models.embeddings import LazyEmbedder, packaged_embedder_version
    from services.recommender.content import item_embeddings

    assert packaged_embedder_version() == embedder.version
    item_embeddings(catalog, embedder, tmp_path)  # a previous start filled the cache
    lazy = LazyEmbedder()
    item_embeddings(catalog, lazy, tmp_path)
    marker = np.full(384, 0.05, dtype=np.float32)
    from_nlu = scored("hi").model_copy(update={"embedding_b64": vector_to_b64(marker), "embedding_model": embedder.version})
    query_embeddings([from_nlu], lazy)
    assert not lazy.loaded
    (computed,) = query_embeddings([scored("warm shoes for hiking")], lazy)
    assert lazy.loaded and np.allclose(computed, embedder.encode(["warm shoes for hiking"])[0], atol=1e-5)
