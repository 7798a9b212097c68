import base64
import json

import pytest

from elmo.contracts import MalformedRecord, UnsupportedSchemaVersion, InvalidEvent, decode, encode
from elmo.contracts.events import INLINE_AUDIO_MAX_BYTES, InboundMessage, Reply, Utterance
from elmo.contracts.topics import INBOUND, all_topics, by_name, dead_letter_topic


def test_plain_json_from_any_client_is_an_inbound_message():
    raw = json.dumps({"event_id": "e1", "conversation_id": "c1", "user_id": "u1", "channel": "telegram", "text": "hi"})
    event = decode(raw.encode(), InboundMessage)
    assert event.text == "hi"
    assert event.origin_event_id == "e1"
    assert event.origin_created_at == event.created_at
    assert event.key == b"c1"


def test_derived_events_carry_lineage_and_shared_fields():
    inbound = InboundMessage(event_id="e1", conversation_id="c1", user_id="u1", channel="whatsapp", text="hello")
    utterance = inbound.derive(Utterance, text="hello", source="text")
    reply = utterance.derive(Reply, text="Hi!", strategy="greet")
    assert utterance.parent_event_id == "e1" and reply.parent_event_id == utterance.event_id
    assert reply.origin_event_id == "e1" and reply.origin_created_at == inbound.created_at
    assert (reply.conversation_id, reply.user_id, reply.channel) == ("c1", "u1", inbound.channel)
    assert reply.event_id not in {"e1", utterance.event_id}


def test_round_trip_keeps_every_field():
    inbound = InboundMessage(conversation_id="c1", user_id="u1", channel="messenger", text="hello")
    assert decode(encode(inbound), InboundMessage) == inbound


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", MalformedRecord),
        (b"[1, 2]", MalformedRecord),
        (None, MalformedRecord),
        (b'{"schema_version": 99, "conversation_id": "c", "user_id": "u", "channel": "web", "text": "x"}', UnsupportedSchemaVersion),
        (b'{"conversation_id": "c", "user_id": "u", "channel": "fax", "text": "x"}', InvalidEvent),
        (b'{"conversation_id": "c", "user_id": "u", "channel": "web"}', InvalidEvent),
        (b'{"conversation_id": "c d", "user_id": "u", "channel": "web", "text": "x"}', InvalidEvent),
    ],
)
def test_each_kind_of_bad_record_has_its_own_error(raw, error):
    with pytest.raises(error):
        decode(raw, InboundMessage)


def test_inline_audio_is_checked_for_base64_and_size():
    ok = {"conversation_id": "c", "user_id": "u", "channel": "web", "audio": {"data_b64": base64.b64encode(b"abc").decode(), "mime_type": "audio/ogg"}}
    assert decode(json.dumps(ok).encode(), InboundMessage).audio.data() == b"abc"
    too_big = base64.b64encode(b"0" * (INLINE_AUDIO_MAX_BYTES + 10)).decode()
    for data in (too_big, "!!notbase64!!"):
        bad = {**ok, "audio": {"data_b64": data, "mime_type": "audio/ogg"}}
        with pytest.raises(InvalidEvent):
            decode(json.dumps(bad).encode(), InboundMessage)


def test_text_and_audio_are_exclusive():
    with pytest.raises(ValueError):
        InboundMessage(conversation_id="c", user_id="u", channel="web", text="x", audio={"uri": "file:///a.ogg", "mime_type": "audio/ogg"})


def test_topic_registry_has_the_public_names_and_a_dead_letter_topic_per_service():
    names = {t.name for t in all_topics()}
    assert {"elmo.inbound", "elmo.replies", "elmo.feedback"} <= names
    assert dead_letter_topic("nlu").name in names
    assert by_name("elmo.inbound") is INBOUND
    assert len(names) == len(all_topics())
