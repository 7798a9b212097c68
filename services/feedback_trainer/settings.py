"""Settings of the feedback-trainer service (environment, prefix ELMO_)."""

from __future__ import annotations

from pydantic import Field

from elmo.interactions import InteractionSettings
from elmo.models.registry import RegistrySettings
from elmo.reply_bandit import ReplyLearningSettings
from elmo.runtime.model_updates import ModelUpdateSettings
from elmo.runtime.settings import RuntimeSettings


class FeedbackTrainerSettings(RuntimeSettings, InteractionSettings, ReplyLearningSettings, ModelUpdateSettings, RegistrySettings):
    trainer_rated_per_user_per_hour: int = Field(
        10, ge=0, description="Most reply ratings of one user counted per hour (the rest are ignored: a guard against poisoning)."
    )
    trainer_corrections: bool = Field(
        True, description="Fine-tune the nlu and sentiment heads on agents' intent and sentiment corrections (through the promotion gate)."
    )
    trainer_corrections_batch: int = Field(20, ge=1, description="Fine-tune a head as soon as this many new corrections of its kind wait.")
    trainer_corrections_interval_s: float = Field(3600.0, gt=0, description="Also fine-tune on whatever corrections wait, this often.")
    trainer_corrections_per_user_per_hour: int = Field(
        5, ge=0, description="Most corrections of one kind from one user collected per hour (a flood from one account counts this many)."
    )
    trainer_weak_labels: bool = Field(
        True, description="Also fine-tune on confident weak labels: messages whose reply was rated +1 while the head was sure of them."
    )
    trainer_weak_label_min_confidence: float = Field(
        0.9, ge=0, le=1, description="Least nlu intent confidence of a rated +1 message for its intent to be a weak label."
    )
    trainer_weak_label_min_sentiment_score: float = Field(
        0.8, gt=0, le=1, description="Least |sentiment score| (on the side of a positive or negative label) for it to be a weak label; never neutral."
    )
    trainer_weak_labels_kept: int = Field(
        100, ge=1, description="Newest weak labels kept per head; a fine-tune started by corrections takes them all (weight 0.5)."
    )
    trainer_weak_labels_per_user_per_hour: int = Field(5, ge=0, description="Most weak labels of one kind from one user's ratings per hour.")
    trainer_fine_tune_epochs: int = Field(8, ge=1, description="Adam epochs over corrections + replayed examples.")
    trainer_replay_examples: int = Field(600, ge=0, description="Original training examples replayed with the corrections (so the other labels stay).")
    trainer_refit: bool = Field(True, description="Refit the recommender's ALS model from the feedback log (through the promotion gate).")
    trainer_refit_after: int = Field(500, ge=1, description="Refit as soon as this many new interactions (views, clicks, purchases) arrived.")
    trainer_refit_interval_s: float = Field(3600.0, gt=0, description="Also refit this often if any arrived (and once, this long after start).")
    trainer_refit_seed: int = Field(13, description="Seed of the ALS refit: the same log and seed give the same version.")
