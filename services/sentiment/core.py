"""sentiment's core: score a batch, reusing nlu's embeddings when they come from the same model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from elmo.contracts.events import Sentiment, SentimentScored, Understanding
from elmo.models.embeddings import vector_from_b64
from elmo.models.sentiment_model import SentimentModel


def embeddings_for(events: Sequence[Understanding], model: SentimentModel) -> tuple[np.ndarray, int]:
    """One embedding per event; returns them and how many had to be computed here."""
    reusable = [e.embedding_b64 is not None and e.embedding_model == model.embedder.version for e in events]
    missing = [i for i, ok in enumerate(reusable) if not ok]
    computed = model.embedder.encode([events[i].text for i in missing]) if missing else None
    rows = []
    for i, event in enumerate(events):
        if reusable[i]:
            rows.append(vector_from_b64(event.embedding_b64))  # type: ignore[arg-type]
        else:
            rows.append(computed[missing.index(i)])  # type: ignore[index]
    return np.vstack(rows) if rows else np.zeros((0, 384), dtype=np.float32), len(missing)


def score_batch(events: Sequence[Understanding], model: SentimentModel) -> list[SentimentScored]:
    embeddings, _ = embeddings_for(events, model)
    predictions = model.predict_embedded(embeddings, [e.text for e in events])
    return [
        event.derive(SentimentScored, sentiment=Sentiment(label=p.label, score=p.score, model_version=model.version))
        for event, p in zip(events, predictions, strict=True)
    ]
