"""Content similarity: each catalog item's text embedded with the same model nlu uses.

The item matrix is computed once and cached in the model store under a key of the catalog's
content and the embedder's version, so a restart (or a second replica on the same volume) loads
it in milliseconds, and a changed catalog or model can never serve stale vectors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

from elmo.brand.catalog import Catalog, Item

CACHE_DIR = "recommender-item-embeddings"


class Embedder(Protocol):
    version: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def item_text(item: Item) -> str:
    """What a customer might say about the item: name, category, description, tags, attributes."""
    parts = [f"{item.name}.", f"{item.category}."]
    if item.description:
        parts.append(item.description)
    if item.tags:
        parts.append("Tags: " + ", ".join(item.tags) + ".")
    attributes = item.attributes
    for label, values in (("Colors", attributes.colors), ("Sizes", attributes.sizes), ("Storage", attributes.storage)):
        if values:
            parts.append(f"{label}: {', '.join(values)}.")
    return " ".join(parts)


def cache_key(catalog: Catalog, embedder_version: str) -> str:
    digest = hashlib.sha256(embedder_version.encode())
    for item in catalog.items:
        digest.update(b"\0" + item.id.encode() + b"\0" + item_text(item).encode())
    return digest.hexdigest()[:24]


def item_embeddings(catalog: Catalog, embedder: Embedder, model_store: Path | None) -> np.ndarray:
    """(items, dim) float32 unit vectors in catalog order; cached under `model_store` if given."""
    path = Path(model_store) / CACHE_DIR / f"{cache_key(catalog, embedder.version)}.npy" if model_store else None
    if path is not None and path.exists():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(catalog.items):
            return cached
    vectors = embedder.encode([item_text(item) for item in catalog.items]).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            np.save(file, vectors, allow_pickle=False)
        os.replace(temporary, path)  # a concurrent reader sees no file or the whole file
    return vectors
