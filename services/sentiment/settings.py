"""Settings of the sentiment service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.runtime.settings import RuntimeSettings


class SentimentSettings(RuntimeSettings):
    # Larger batches keep the embedding model busy when an event arrives without nlu's embedding.
    batch_max_records: int = Field(256, ge=1, description="Most records handed to the core in one call.")
