"""Settings of the feedback-trainer service (environment, prefix ELMO_)."""

from __future__ import annotations

from elmo.interactions import InteractionSettings
from elmo.runtime.settings import RuntimeSettings


class FeedbackTrainerSettings(RuntimeSettings, InteractionSettings):
    pass
