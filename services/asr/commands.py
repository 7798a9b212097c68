"""`elmo asr FILE...`: transcribe local audio files with the service's own decoding and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import typer

from elmo.runtime.stage import RejectedInput
from services.asr.audio import load_audio_file
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcriber

app = typer.Typer(help="Speech to text with the asr service's model (offline).")


class ModelChoice(str, Enum):
    BASE = "base"
    TINY_EN = "tiny.en"


def transcribe_files(paths: list[Path], settings: AsrSettings, transcriber: Transcriber | None = None) -> Iterator[dict]:
    """One dict per file, in order: the transcript, or `{"file", "error"}` when the file is unusable."""
    transcriber = transcriber or Transcriber.from_settings(settings)
    for path in paths:
        try:
            audio = load_audio_file(path, max_duration_s=settings.asr_max_audio_s)
        except (RejectedInput, OSError) as error:
            yield {"file": str(path), "error": str(error)}
            continue
        transcript = transcriber.transcribe(audio)
        yield {
            "file": str(path),
            "text": transcript.text,
            "language": transcript.language,
            "duration_s": round(transcript.duration_s, 3),
            "processing_s": round(transcript.processing_s, 3),
        }


# A callback, not a command, so that mounted with `add_typer(app, name="asr")` it runs as
# `elmo asr FILE...` rather than `elmo asr transcribe FILE...`.
@app.callback(invoke_without_command=True)
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files: .ogg/.opus, .mp3, .m4a, .wav, .webm, or .raw (16 kHz s16le)."),
    model: ModelChoice | None = typer.Option(None, "--model", help="Whisper model (default: ELMO_ASR_MODEL, else base)."),
) -> None:
    """Transcribe audio files offline; one JSON line per file, exit code 1 if any failed."""
    settings = AsrSettings(asr_model=model.value) if model is not None else AsrSettings()
    failed = False
    for result in transcribe_files(files, settings):
        failed |= "error" in result
        typer.echo(json.dumps(result, ensure_ascii=False))
    if failed:
        raise typer.Exit(1)
