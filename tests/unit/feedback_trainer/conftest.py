from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.intent_model import MODEL_KIND
from elmo.models.intent_model import train as train_nlu

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(threads=2)


@pytest.fixture(scope="session")
def nlu_head_source(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> ArtifactStore:
    """A store whose current nlu head was trained by `elmo train nlu`: the local store's if there is
    one (or `ELMO_TEST_MODEL_STORE`'s), else trained now (about a minute)."""
    for root in (os.environ.get("ELMO_TEST_MODEL_STORE"), REPO_ROOT / ".local/model-store"):
        if root and ArtifactStore(Path(root)).current_version(MODEL_KIND):
            found = ArtifactStore(Path(root)).current(MODEL_KIND)
            if found.meta.get("embedding_model") == embedder.version:
                return ArtifactStore(Path(root))
    store = ArtifactStore(tmp_path_factory.mktemp("nlu-store"))
    train_nlu(store, embedder)
    return store


@pytest.fixture
def nlu_store(tmp_path: Path, nlu_head_source: ArtifactStore) -> ArtifactStore:
    """A fresh store holding only a copy of that head, as current: tests never touch the source."""
    found = nlu_head_source.current(MODEL_KIND)
    meta = {k: v for k, v in found.meta.items() if k not in ("kind", "version", "parent_version", "created_at", "status")}
    store = ArtifactStore(tmp_path / "store")
    store.save(MODEL_KIND, lambda d: [shutil.copy(f, d / f.name) for f in found.path.iterdir() if f.name != "meta.json"], meta)
    return store
