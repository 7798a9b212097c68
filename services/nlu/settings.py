"""Settings of the nlu service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.runtime.settings import RuntimeSettings


class NluSettings(RuntimeSettings):
    nlu_min_confidence: float = Field(
        0.3, ge=0, le=1, description="Below this calibrated confidence an utterance is out_of_scope."
    )
    nlu_context_ttl_s: int = Field(1800, ge=1, description="A conversation's dialogue context expires after this idle time.")
    nlu_context_turns: int = Field(6, ge=1, description="Turns of history kept per conversation.")
