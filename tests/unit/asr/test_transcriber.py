"""Transcriber details: the confidence formula, and long notes going through the chunk-batching path."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from faster_whisper import decode_audio

from elmo.tools.test_data import synthesize_speech
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcriber, confidence
from services.asr.wer import wer

SENTENCE = "Please send me the tracking number for my order."
# Varied sentences (a repeated one invites Whisper's repetition loops), about 35 s when spoken.
PASSAGE = (
    "Hello, I want to change my delivery address. Please send me the tracking number for my order. "
    "Do you have these shoes in a larger size? My package arrived damaged and I want a refund. "
    "Where is my order? It has not arrived yet. I would like to return the blue jacket I ordered last week. "
    "Can you tell me when the store opens on Sunday morning? I paid twice for the same order by mistake. "
    "Could you check whether the green sweater is back in stock? I would also like to know the price of shipping to Canada. "
    "Thank you very much for your help, have a nice evening."
)


def segment(avg_logprob: float, tokens: int) -> SimpleNamespace:
    return SimpleNamespace(avg_logprob=avg_logprob, tokens=list(range(tokens)))


def test_confidence_is_the_geometric_mean_token_probability() -> None:
    assert confidence([segment(-0.2, 10)]) == pytest.approx(math.exp(-0.2))
    # Token-weighted: the long confident segment counts three times the short unsure one.
    assert confidence([segment(-0.1, 30), segment(-1.0, 10)]) == pytest.approx(math.exp((-0.1 * 30 - 1.0 * 10) / 40))
    assert confidence([]) == 0.0
    assert confidence([segment(0.05, 3)]) == 1.0  # clipped


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber.from_settings(AsrSettings(asr_model="tiny.en"))


def spoken(text: str, folder: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return decode_audio(str(synthesize_speech(text, folder / "speech.wav")))


@pytest.fixture(scope="module")
def sentence_audio(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return spoken(SENTENCE, tmp_path_factory.mktemp("sentence"))


def test_a_note_longer_than_one_whisper_window_is_transcribed_whole(transcriber: Transcriber, tmp_path: Path) -> None:
    long_note = spoken(PASSAGE, tmp_path)
    assert long_note.size / 16_000 > 30

    result = transcriber.transcribe(long_note)

    assert wer(PASSAGE, result.text) <= 0.35, result.text
    assert result.duration_s == pytest.approx(long_note.size / 16_000)
    assert result.segments[-1].end_s > 30
    assert result.language == "en" and 0 < result.confidence <= 1


def test_a_batch_is_one_transcript_per_note_in_order(transcriber: Transcriber, sentence_audio: np.ndarray) -> None:
    noise = np.random.default_rng(0).normal(0, 0.05, 16_000).astype(np.float32)

    speech, no_speech = transcriber.transcribe_batch([sentence_audio, noise])

    assert wer(SENTENCE, speech.text) <= 0.35
    assert no_speech.text == "" and no_speech.segments == () and no_speech.confidence == 0.0
