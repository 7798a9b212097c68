"""Settings of the intake service, from the environment (`ELMO_VOICE_BACKLOG_*` plus the runtime's `ELMO_*`)."""

from __future__ import annotations

from pydantic import Field

from elmo.runtime.settings import RuntimeSettings
from elmo.voice_backlog import DEFAULT_TTL_S


class IntakeSettings(RuntimeSettings):
    voice_backlog_ttl_s: int = Field(
        DEFAULT_TTL_S,
        ge=60,
        description="How long a conversation's mark 'message queued for asr' outlives its last voice note when "
        "asr never clears it (a record asr cannot decode). Meanwhile that conversation's text goes through asr.",
    )
