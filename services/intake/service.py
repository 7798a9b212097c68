"""The intake service: elmo.inbound -> elmo.utterances (text) or elmo.voice-notes (for asr).

The routing is `services.intake.core.route_batch`; the conversations waiting on asr are read from
and marked in the shared voice backlog (`elmo.voice_backlog`), which asr clears.
"""

from __future__ import annotations

from collections.abc import Sequence

from elmo.contracts import topics
from elmo.contracts.events import InboundMessage
from elmo.runtime import Routed, Stage, run_stage
from elmo.voice_backlog import VoiceBacklog
from services.intake.core import route_batch
from services.intake.settings import IntakeSettings


def build_stage(settings: IntakeSettings) -> Stage[InboundMessage]:
    backlog: VoiceBacklog | None = None

    def open_backlog() -> None:
        nonlocal backlog
        backlog = VoiceBacklog.from_url(settings.redis_url, settings.voice_backlog_ttl_s)

    async def route(events: Sequence[InboundMessage]) -> list[Routed]:
        assert backlog is not None, "on_start opens the backlog before consuming starts"
        routed = route_batch(events, await backlog.waiting(e.conversation_id for e in events))
        # Marked before the runtime publishes: asr can never finish a message that is not marked yet.
        await backlog.add(routed.queued_for_asr)
        return routed.outputs

    async def close() -> None:
        if backlog is not None:
            await backlog.close()

    return Stage(
        name="intake",
        consumes=topics.INBOUND,
        emits=topics.UTTERANCES,
        also_emits=(topics.VOICE_NOTES,),
        input_type=InboundMessage,
        process_batch=route,
        on_start=open_backlog,
        on_stop=close,
        description="Text messages straight on to nlu; voice notes, and text queued behind them, to asr.",
    )


def main() -> None:
    settings = IntakeSettings()
    run_stage(build_stage(settings), settings)
