"""A voice note and the text behind it through intake -> asr -> nlu -> sentiment, as deployed, on the real broker and Redis."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from elmo.contracts import topics
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.test_data import synthesize_speech, to_ogg_opus
from services.asr.wer import wer
from tests.integration.kafka_io import ServiceProcess, chain_services, end_offsets, produce, read_from

pytestmark = pytest.mark.integration

SPOKEN = "Thank you so much, I really love it!"


@pytest.fixture(scope="module")
def chain(connections: ConnectionSettings, trained_model_store) -> Iterator[list[ServiceProcess]]:
    env = {"ELMO_MODEL_STORE": str(trained_model_store.root)}
    with chain_services(connections.kafka_bootstrap_servers, ("intake", "asr", "nlu", "sentiment"), "test", env) as services:
        yield services


def test_a_voice_note_and_a_text_come_out_scored_with_transcript_intent_and_sentiment(
    chain: list[ServiceProcess], connections: ConnectionSettings, tmp_path: Path
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    ogg = to_ogg_opus(synthesize_speech(SPOKEN, tmp_path / "note.wav"), tmp_path / "note.ogg")
    conversation = f"voice-{uuid.uuid4().hex[:8]}"
    base = {"conversation_id": conversation, "user_id": "u-" + conversation, "channel": "whatsapp"}
    voice = {**base, "event_id": uuid.uuid4().hex, "audio": {"data_b64": base64.b64encode(ogg.read_bytes()).decode(), "mime_type": "audio/ogg; codecs=opus"}}
    text = {**base, "event_id": uuid.uuid4().hex, "text": "this is the worst service ever, i am furious"}
    before = end_offsets(bootstrap, topics.SENTIMENTS.name)

    produce(bootstrap, topics.INBOUND.name, [voice, text])
    scored = [json.loads(r.value) for r in read_from(bootstrap, before, lambda r: r.key == conversation.encode(), expected=2, timeout_s=120)]

    assert [s["origin_event_id"] for s in scored] == [voice["event_id"], text["event_id"]]
    spoken, typed = scored
    assert spoken["event_type"] == "sentiment_scored" and spoken["source"] == "voice"
    assert wer(SPOKEN, spoken["text"]) <= 0.35, spoken["text"]
    assert spoken["intent"]["name"] == "thanks"
    assert spoken["sentiment"]["label"] == "positive" and spoken["sentiment"]["score"] > 0.3
    assert typed["intent"]["name"] == "complaint"
    assert typed["sentiment"]["label"] == "negative" and typed["sentiment"]["score"] < -0.3
    assert typed["context"]["turn"] == 2  # the dialogue state in Redis saw both turns
    for event in scored:
        assert event["nlu_model_version"] and event["sentiment"]["model_version"] and event["embedding_model"]
