"""The one service runtime: every Elmo service is a `Stage` run by `run_stage`."""

from elmo.runtime.app import StageService, run_stage
from elmo.runtime.settings import ConnectionSettings, RuntimeSettings
from elmo.runtime.stage import ModelSlot, RejectedInput, Routed, Stage

__all__ = ["ConnectionSettings", "ModelSlot", "RejectedInput", "Routed", "RuntimeSettings", "Stage", "StageService", "run_stage"]
