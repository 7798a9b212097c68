"""intake and asr as deployed, on the real broker and Redis: text of other conversations overtakes
a voice note in asr, and text of the voice note's own conversation waits behind it."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from elmo.contracts import topics
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.test_data import synthesize_speech, to_ogg_opus
from elmo.voice_backlog import backlog_key
from tests.integration.kafka_io import ServiceProcess, chain_services, end_offsets, produce, read_from

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake_and_asr(connections: ConnectionSettings) -> Iterator[list[ServiceProcess]]:
    with chain_services(connections.kafka_bootstrap_servers, ("intake", "asr"), "test", {"ELMO_ASR_MODEL": "tiny.en"}) as services:
        yield services


def message(conversation: str, **content: object) -> dict:
    return {"event_id": uuid.uuid4().hex, "conversation_id": conversation, "user_id": "u-" + conversation, "channel": "web", **content}


def producer(record) -> str:  # noqa: ANN001 - a kafka-python ConsumerRecord
    return dict(record.headers)["elmo.producer"].decode()


def test_text_overtakes_another_conversations_voice_note_but_not_its_own(
    intake_and_asr: list[ServiceProcess], connections: ConnectionSettings, tmp_path: Path
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    ogg = to_ogg_opus(synthesize_speech("I would like to buy a new phone please", tmp_path / "n.wav"), tmp_path / "n.ogg")
    speaking, typing = f"voice-{uuid.uuid4().hex[:8]}", f"text-{uuid.uuid4().hex[:8]}"
    note = message(speaking, audio={"data_b64": base64.b64encode(ogg.read_bytes()).decode(), "mime_type": "audio/ogg"})
    behind_note = message(speaking, text="the blue one")
    other = message(typing, text="hello, where is my order?")
    before = end_offsets(bootstrap, topics.UTTERANCES.name)

    produce(bootstrap, topics.INBOUND.name, [note, behind_note, other])
    ours = {speaking.encode(), typing.encode()}
    records = read_from(bootstrap, before, lambda r: r.key in ours, expected=3, timeout_s=60)

    by_origin = {json.loads(r.value)["origin_event_id"]: r for r in records}
    assert set(by_origin) == {note["event_id"], behind_note["event_id"], other["event_id"]}
    transcribed, queued, overtaking = (by_origin[m["event_id"]] for m in (note, behind_note, other))
    # The other conversation's text went straight from intake, before Whisper finished the note.
    assert producer(overtaking) == "intake" and json.loads(overtaking.value)["source"] == "text"
    assert overtaking.timestamp <= transcribed.timestamp
    # The note's own conversation kept its order: its text queued behind the note in asr.
    assert producer(transcribed) == producer(queued) == "asr"
    assert transcribed.partition == queued.partition
    assert transcribed.offset < queued.offset
    assert json.loads(transcribed.value)["source"] == "voice" and "phone" in json.loads(transcribed.value)["text"].lower()

    # Once both are out of asr the conversation's backlog is empty: its next text goes straight on.
    store = redis.Redis.from_url(connections.redis_url)
    deadline = time.monotonic() + 5
    while store.exists(backlog_key(speaking)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not store.exists(backlog_key(speaking))
    later = message(speaking, text="thanks")
    before = end_offsets(bootstrap, topics.UTTERANCES.name)
    produce(bootstrap, topics.INBOUND.name, [later])
    (direct,) = read_from(bootstrap, before, lambda r: r.key == speaking.encode(), expected=1, timeout_s=30)
    assert producer(direct) == "intake"
