"""`elmo asr FILE...`: one JSON line per file, errors reported per file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from elmo.tools.test_data import synthesize_speech
from services.asr.commands import app, transcribe_files
from services.asr.settings import AsrSettings
from services.asr.transcriber import TimedText, Transcript
from services.asr.wer import wer


class FixedTranscriber:
    def transcribe(self, audio: np.ndarray) -> Transcript:
        duration = audio.size / 16_000
        return Transcript("hello there", "en", 1.0, duration, (TimedText(0, duration, "hello there"),), 0.9, 0.25)


def test_each_file_yields_its_transcript_or_its_error(tmp_path: Path) -> None:
    pcm = tmp_path / "note.raw"
    pcm.write_bytes((0.2 * np.sin(np.arange(8_000) / 5) * 32767).astype("<i2").tobytes())
    garbage = tmp_path / "broken.ogg"
    garbage.write_bytes(b"definitely not ogg")
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hi")

    results = list(transcribe_files([pcm, garbage, unknown, tmp_path / "missing.wav"], AsrSettings(), FixedTranscriber()))

    assert results[0] == {"file": str(pcm), "text": "hello there", "language": "en", "duration_s": 0.5, "processing_s": 0.25}
    assert results[1]["error"].startswith("undecodable audio (audio/ogg")
    assert results[2]["error"].startswith("unknown audio file type '.txt'")
    assert "No such file" in results[3]["error"]


def test_the_command_prints_json_lines_and_fails_if_any_file_failed(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    speech = synthesize_speech("Hello, I want to change my delivery address.", tmp_path / "speech.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")

    result = CliRunner().invoke(app, ["--model", "tiny.en", str(speech), str(empty)])

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1
    assert wer("hello i want to change my delivery address", lines[0]["text"]) <= 0.35
    assert lines[0]["language"] == "en" and lines[0]["duration_s"] > 1
    assert lines[1] == {"file": str(empty), "error": "audio is empty (0 bytes)"}
