"""Settings of the feedback-trainer service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.interactions import InteractionSettings
from elmo.learning.feedback import FeedbackLearningSettings
from elmo.learning.state_epoch import StateCheckSettings
from elmo.models.registry import RegistrySettings
from elmo.reply_bandit import ReplyLearningSettings
from elmo.runtime.model_updates import ModelUpdateSettings
from elmo.runtime.settings import RuntimeSettings


class FeedbackTrainerSettings(
    RuntimeSettings, InteractionSettings, ReplyLearningSettings, FeedbackLearningSettings, StateCheckSettings, ModelUpdateSettings, RegistrySettings
):
    """The trainer's own settings; how reactions are counted is `FeedbackLearningSettings` (shared with `elmo state rebuild`)."""

    trainer_corrections_batch: int = Field(20, ge=1, description="Fine-tune a head as soon as this many new corrections of its kind wait.")
    trainer_corrections_interval_s: float = Field(3600.0, gt=0, description="Also fine-tune on whatever corrections wait, this often.")
    trainer_fine_tune_epochs: int = Field(8, ge=1, description="Adam epochs over corrections + replayed examples.")
    trainer_replay_examples: int = Field(600, ge=0, description="Original training examples replayed with the corrections (so the other labels stay).")
    trainer_refit: bool = Field(True, description="Refit the recommender's ALS model from the feedback log (through the promotion gate).")
    trainer_refit_after: int = Field(500, ge=1, description="Refit as soon as this many new interactions (views, clicks, purchases) arrived.")
    trainer_refit_interval_s: float = Field(3600.0, gt=0, description="Also refit this often if any arrived (and once, this long after start).")
    trainer_refit_seed: int = Field(13, description="Seed of the ALS refit: the same log and seed give the same version.")
