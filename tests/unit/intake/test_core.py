"""The intake core: text overtakes voice notes of other conversations, never of its own."""

from __future__ import annotations

from elmo.contracts import topics
from elmo.contracts.events import InboundMessage, InlineAudio, Utterance
from services.intake.core import route_batch

AUDIO = InlineAudio(data_b64="AAAA", mime_type="audio/ogg")


def text(conversation: str, words: str) -> InboundMessage:
    return InboundMessage(conversation_id=conversation, user_id="u1", channel="web", text=words)


def voice(conversation: str) -> InboundMessage:
    return InboundMessage(conversation_id=conversation, user_id="u1", channel="web", audio=AUDIO)


def test_text_goes_straight_to_utterances_and_voice_to_asr():
    hello, note = text("c1", "hello"), voice("c2")
    routed = route_batch([hello, note], set())
    (to_nlu, to_asr) = routed.outputs
    assert to_nlu.topic == topics.UTTERANCES and isinstance(to_nlu.event, Utterance)
    assert (to_nlu.event.text, to_nlu.event.source, to_nlu.event.origin_event_id) == ("hello", "text", hello.event_id)
    assert to_asr.topic == topics.VOICE_NOTES and isinstance(to_asr.event, InboundMessage)
    assert to_asr.event.audio == AUDIO and to_asr.event.parent_event_id == note.event_id
    assert routed.queued_for_asr == [("c2", note.event_id)]


def test_text_queues_behind_a_voice_note_of_its_conversation_in_the_same_batch():
    note, follow_up, other = voice("c1"), text("c1", "and in blue?"), text("c2", "hi")
    routed = route_batch([note, follow_up, other], set())
    assert [o.topic for o in routed.outputs] == [topics.VOICE_NOTES, topics.VOICE_NOTES, topics.UTTERANCES]
    assert routed.queued_for_asr == [("c1", note.event_id), ("c1", follow_up.event_id)]


def test_text_queues_behind_a_voice_note_still_in_asr_from_an_earlier_batch():
    waiting = {"c1"}
    routed = route_batch([text("c1", "still there?"), text("c2", "hi")], waiting)
    assert [o.topic for o in routed.outputs] == [topics.VOICE_NOTES, topics.UTTERANCES]
    assert waiting == {"c1"}  # the caller's set is not modified


def test_text_before_a_voice_note_is_not_held_back():
    first, note = text("c1", "hi"), voice("c1")
    routed = route_batch([first, note], set())
    assert [o.topic for o in routed.outputs] == [topics.UTTERANCES, topics.VOICE_NOTES]
    assert routed.queued_for_asr == [("c1", note.event_id)]
