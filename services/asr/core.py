"""The asr core: inbound messages -> utterances. Text passes through; voice is decoded and transcribed.

Pure apart from the transcriber it is given, so a unit test can call it with no broker. An input
that can never succeed (undecodable, too long, silent, no speech) comes back as a `RejectedInput`
in its place in the list: the runtime dead-letters it and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from elmo.contracts.events import InboundMessage, Segment, Utterance
from elmo.runtime.stage import RejectedInput
from services.asr.audio import load_audio
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcript


class TranscribesAudio(Protocol):
    @property
    def model_version(self) -> str: ...

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]: ...


def transcribe_batch(
    events: Sequence[InboundMessage], transcriber: TranscribesAudio, settings: AsrSettings
) -> list[Utterance | RejectedInput]:
    """One result per event, in order."""
    results: list[Utterance | RejectedInput | None] = [None] * len(events)
    voice: list[tuple[int, np.ndarray]] = []
    for position, event in enumerate(events):
        if event.audio is None:
            results[position] = event.derive(Utterance, text=event.text, source="text")
            continue
        try:
            audio = load_audio(event.audio, max_duration_s=settings.asr_max_audio_s, blob_root=settings.asr_blob_root)
        except RejectedInput as rejection:
            results[position] = rejection
            continue
        voice.append((position, audio))

    if voice:  # a batch of text only never touches the model
        transcripts = transcriber.transcribe_batch([audio for _, audio in voice])
        for (position, _), transcript in zip(voice, transcripts, strict=True):
            results[position] = utterance_from(events[position], transcript, transcriber.model_version)
    return results  # type: ignore[return-value] - every position was filled above


def utterance_from(event: InboundMessage, transcript: Transcript, model_version: str) -> Utterance | RejectedInput:
    if not transcript.text:
        # The audio was not silent (decode checked that) but Whisper's VAD or decoder found no words.
        return RejectedInput(f"no speech recognised in {transcript.duration_s:.1f} s of audio")
    return event.derive(
        Utterance,
        text=transcript.text,
        source="voice",
        language=transcript.language,
        duration_s=round(transcript.duration_s, 3),
        segments=[Segment(start_s=s.start_s, end_s=s.end_s, text=s.text) for s in transcript.segments],
        transcription_confidence=transcript.confidence,
        asr_model=model_version,
    )
