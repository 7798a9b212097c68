"""The intake core: route each inbound message to where it can be answered soonest, in order.

Pure: given a batch and the conversations that already have messages queued for asr, it returns
one routed output per message and the messages it queued. A text message goes straight to
`elmo.utterances`, unless its conversation has a message ahead of it in asr (queued before, or
earlier in this batch): then it queues behind that message on `elmo.voice-notes`, so a customer
who sends a voice note and then "and in blue?" gets the answers in the order they asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from elmo.contracts import topics
from elmo.contracts.events import InboundMessage, Utterance
from elmo.runtime import Routed


@dataclass
class RoutedBatch:
    outputs: list[Routed] = field(default_factory=list)
    # (conversation id, origin event id) of every message sent to asr, to mark before publishing.
    queued_for_asr: list[tuple[str, str]] = field(default_factory=list)


def route_batch(events: Sequence[InboundMessage], conversations_waiting_on_asr: set[str]) -> RoutedBatch:
    """One output per event, in order; `conversations_waiting_on_asr` is not modified."""
    waiting = set(conversations_waiting_on_asr)
    routed = RoutedBatch()
    for event in events:
        if event.audio is not None or event.conversation_id in waiting:
            waiting.add(event.conversation_id)
            routed.outputs.append(Routed(topics.VOICE_NOTES, event.derive(InboundMessage)))
            routed.queued_for_asr.append((event.conversation_id, event.origin_event_id))
        else:
            routed.outputs.append(Routed(topics.UTTERANCES, event.derive(Utterance, text=event.text, source="text")))
    return routed
