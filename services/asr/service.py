"""The asr service: elmo.voice-notes -> elmo.utterances. The work is `services.asr.core.transcribe_batch`.

intake routes voice notes here, and text queued behind a voice note of the same conversation; once
a batch's utterances are acknowledged, its messages leave the voice backlog, so that
conversation's next text can go straight past asr again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from elmo.contracts import topics
from elmo.contracts.events import InboundMessage, Utterance
from elmo.runtime import ModelSlot, RejectedInput, Stage, run_stage
from elmo.voice_backlog import VoiceBacklog
from services.asr import core
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcriber


def build_stage(settings: AsrSettings) -> Stage[InboundMessage]:
    model = ModelSlot(f"whisper-{settings.asr_model}")
    transcriber: Transcriber | None = None
    backlog: VoiceBacklog | None = None

    def load_model() -> None:
        # In on_start, not at import: readiness stays false until the model is loaded.
        nonlocal transcriber, backlog
        backlog = VoiceBacklog.from_url(settings.redis_url)
        transcriber = Transcriber.from_settings(settings)
        model.set_loaded(transcriber.model_version)

    async def leave_backlog(events: Sequence[InboundMessage]) -> None:
        assert backlog is not None
        await backlog.remove([(e.conversation_id, e.origin_event_id) for e in events])

    async def close() -> None:
        if backlog is not None:
            await backlog.close()

    def transcribe(events: Sequence[InboundMessage]) -> list[Utterance | RejectedInput]:
        assert transcriber is not None, "on_start loads the model before consuming starts"
        return core.transcribe_batch(events, transcriber, settings)

    return Stage(
        name="asr",
        consumes=topics.VOICE_NOTES,
        emits=topics.UTTERANCES,
        input_type=InboundMessage,
        process_batch=transcribe,  # synchronous: the runtime runs it in a worker thread
        model=model,
        on_start=load_model,
        after_batch=leave_backlog,
        on_stop=close,
        description="Voice notes transcribed by Whisper; text queued behind them passed through unchanged.",
    )


def main() -> None:
    # faster-whisper logs two INFO lines per note; the runtime's metrics already count them.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    settings = AsrSettings()
    os.nice(settings.asr_nice)  # before any thread starts: every thread inherits it
    run_stage(build_stage(settings), settings)
