"""Settings of the recommender service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.interactions import InteractionSettings
from elmo.learning.state_epoch import StateCheckSettings
from elmo.link_settings import LinkSettings
from elmo.runtime.settings import RuntimeSettings


class RecommenderSettings(RuntimeSettings, LinkSettings, InteractionSettings, StateCheckSettings):
    recommender_top_k: int = Field(3, ge=1, le=20, description="Recommendations per message.")
    recommender_cf_weight: float = Field(0.5, ge=0, description="Weight of collaborative filtering (ALS) in the blend.")
    recommender_content_weight: float = Field(0.3, ge=0, description="Weight of text similarity to the message (and product in focus).")
    recommender_popularity_weight: float = Field(0.2, ge=0, description="Weight of recent popularity.")
    recommender_popularity_refresh_s: float = Field(5.0, ge=0, description="How long a read of the popularity counters is reused.")
