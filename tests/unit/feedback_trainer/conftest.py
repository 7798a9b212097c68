from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from elmo.models import intent_model, sentiment_model
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.tools.test_data import fetch_vader_ratings

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(threads=2)


def trained_store(kind: str, embedder: SentenceEmbedder) -> ArtifactStore | None:
    """The local store (or `ELMO_TEST_MODEL_STORE`) when its current `kind` head suits `embedder`."""
    for root in (os.environ.get("ELMO_TEST_MODEL_STORE"), REPO_ROOT / ".local/model-store"):
        if root and ArtifactStore(Path(root)).current_version(kind):
            if ArtifactStore(Path(root)).current(kind).meta.get("embedding_model") == embedder.version:
                return ArtifactStore(Path(root))
    return None


def copy_of_current(source: ArtifactStore, kind: str, root: Path) -> ArtifactStore:
    """A fresh store holding only a copy of `source`'s current `kind` head, as current: tests never touch the source."""
    found = source.current(kind)
    meta = {k: v for k, v in found.meta.items() if k not in ("kind", "version", "parent_version", "created_at", "status")}
    store = ArtifactStore(root)
    store.save(kind, lambda d: [shutil.copy(f, d / f.name) for f in found.path.iterdir() if f.name != "meta.json"], meta)
    return store


@pytest.fixture(scope="session")
def nlu_head_source(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> ArtifactStore:
    """A store whose current nlu head was trained by `elmo train nlu`: the local store's if there is
    one (or `ELMO_TEST_MODEL_STORE`'s), else trained now (about a minute)."""
    found = trained_store(intent_model.MODEL_KIND, embedder)
    if found is not None:
        return found
    store = ArtifactStore(tmp_path_factory.mktemp("nlu-store"))
    intent_model.train(store, embedder)
    return store


@pytest.fixture(scope="session")
def sentiment_head_source(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> ArtifactStore:
    """A store whose current sentiment head was trained by `elmo train sentiment`: the local store's
    if there is one (or `ELMO_TEST_MODEL_STORE`'s), else trained now on the VADER tweets and the
    brand examples (about a minute; fetches the VADER ratings once)."""
    found = trained_store(sentiment_model.MODEL_KIND, embedder)
    if found is not None:
        return found
    store = ArtifactStore(tmp_path_factory.mktemp("sentiment-store"))
    sentiment_model.train(store, embedder, sentiment_model.find_vader_directory(fetch_vader_ratings()), vader_sources=("tweets",))
    return store


@pytest.fixture
def nlu_store(tmp_path: Path, nlu_head_source: ArtifactStore) -> ArtifactStore:
    return copy_of_current(nlu_head_source, intent_model.MODEL_KIND, tmp_path / "store")


@pytest.fixture
def sentiment_store(tmp_path: Path, sentiment_head_source: ArtifactStore) -> ArtifactStore:
    return copy_of_current(sentiment_head_source, sentiment_model.MODEL_KIND, tmp_path / "store")
