"""The asr service: elmo.inbound -> elmo.utterances. The work is `services.asr.core.transcribe_batch`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from elmo.contracts import topics
from elmo.contracts.events import InboundMessage, Utterance
from elmo.runtime import ModelSlot, RejectedInput, Stage, run_stage
from services.asr import core
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcriber


def build_stage(settings: AsrSettings) -> Stage[InboundMessage]:
    model = ModelSlot(f"whisper-{settings.asr_model}")
    transcriber: Transcriber | None = None

    def load_model() -> None:
        # In on_start, not at import: readiness stays false until the model is loaded.
        nonlocal transcriber
        transcriber = Transcriber.from_settings(settings)
        model.set_loaded(transcriber.model_version)

    def transcribe(events: Sequence[InboundMessage]) -> list[Utterance | RejectedInput]:
        assert transcriber is not None, "on_start loads the model before consuming starts"
        return core.transcribe_batch(events, transcriber, settings)

    return Stage(
        name="asr",
        consumes=topics.INBOUND,
        emits=topics.UTTERANCES,
        input_type=InboundMessage,
        process_batch=transcribe,  # synchronous: the runtime runs it in a worker thread
        model=model,
        on_start=load_model,
        description="Voice notes transcribed by Whisper; text messages passed through unchanged.",
    )


def main() -> None:
    # faster-whisper logs two INFO lines per note; the runtime's metrics already count them.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    settings = AsrSettings()
    run_stage(build_stage(settings), settings)
