"""Settings of the generator service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.reply_bandit import ReplyLearningSettings
from elmo.runtime.settings import RuntimeSettings


class GeneratorSettings(RuntimeSettings, ReplyLearningSettings):
    generator_context_ttl_s: int = Field(1800, ge=1, description="The bot's memory of a conversation expires after this idle time.")
    generator_rephrase: bool = Field(
        False, description="Rephrase template replies with SmolLM2 (needs the `rephrase` extra); sent only if grounded."
    )
    generator_rephrase_max_new_tokens: int = Field(80, ge=8, description="Longest rephrasing the language model may write.")
    generator_bandit: bool = Field(
        True, description="Choose each strategy's wording by Thompson sampling over customers' reactions (else fixed by the event id)."
    )
    generator_bandit_refresh_s: float = Field(5.0, ge=0, description="How long a read of the bandit's counts is reused (refreshed in the background).")
