"""Settings of the asr service, from the environment (`ELMO_ASR_*` plus the runtime's `ELMO_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from elmo.runtime.settings import RuntimeSettings

# Seconds of processing per second of audio that a batch is budgeted for when deriving the stall
# limit: about twice the base model's measured real-time factor on 2 threads (0.27).
WORST_CASE_REAL_TIME_FACTOR = 0.5


class AsrSettings(RuntimeSettings):
    """How the asr service transcribes; the runtime's settings (Kafka, retries, health) are inherited."""

    asr_model: Literal["base", "tiny.en"] = Field(
        "base",
        description="Whisper model: `base` (multilingual, WER 4.2 %, RTF 0.27 on 2 threads) or `tiny.en` "
        "(English only, about twice as fast). Both come from installed packages; nothing is downloaded.",
    )
    asr_threads: int = Field(2, ge=1, description="CPU threads CTranslate2 uses for one transcription.")
    asr_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling niceness of the asr process. Transcription is the chain's only long CPU job; "
        "on shared cores (a laptop, `elmo up`) a positive value lets the millisecond text path run first. "
        "In a pod with its own CPU it changes nothing.",
    )
    asr_beam_size: int = Field(5, ge=1, description="Beam size of Whisper's decoder (1 = greedy, faster, less accurate).")
    asr_max_audio_s: float = Field(120.0, gt=0, description="Longest voice note accepted, in seconds; longer ones are rejected.")
    asr_model_cache_dir: Path = Field(
        Path(".local/models/whisper"),
        description="Writable folder where the base model's split weights are joined once (145 MB), "
        "relative to the working directory unless absolute.",
    )
    asr_blob_root: Path | None = Field(
        None,
        description="Folder that `file://` audio blob URIs must point into; unset = any local path (development only).",
    )
    asr_batch_size: int = Field(
        8,
        ge=1,
        description="Most inbound messages the transcriber gets at once; becomes the runtime's batch size "
        "unless ELMO_BATCH_MAX_RECORDS is set. Voice notes are slow, so small batches keep latency and the "
        "stall limit in check.",
    )

    @model_validator(mode="after")
    def _fit_runtime_to_voice_batches(self) -> Self:
        # The runtime's defaults suit millisecond cores: 64 records per batch and a 120 s stall
        # limit. Eight two-minute voice notes can take minutes, so unless an operator chose
        # otherwise, batches are smaller and /healthz tolerates the slowest batch they can make.
        if "batch_max_records" not in self.model_fields_set:
            self.batch_max_records = self.asr_batch_size
        if "stall_after_s" not in self.model_fields_set:
            slowest_batch_s = self.batch_max_records * self.asr_max_audio_s * WORST_CASE_REAL_TIME_FACTOR
            self.stall_after_s = max(self.stall_after_s, slowest_batch_s)
        return self
