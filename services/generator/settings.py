"""Settings of the generator service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.runtime.settings import RuntimeSettings


class GeneratorSettings(RuntimeSettings):
    generator_context_ttl_s: int = Field(1800, ge=1, description="The bot's memory of a conversation expires after this idle time.")
    generator_rephrase: bool = Field(
        False, description="Rephrase template replies with SmolLM2 (needs the `rephrase` extra); sent only if grounded."
    )
    generator_rephrase_max_new_tokens: int = Field(80, ge=8, description="Longest rephrasing the language model may write.")
