"""Whisper (faster-whisper, CTranslate2 int8 on CPU) loaded once; 16 kHz samples in, `Transcript` out.

Batching was measured on 2 threads, beam 5, VAD on (tests/load/bench_asr.py has end-to-end figures).
Eight short voice notes (pocketsphinx clips of 1-7 s, 22.5 s in all):

    model     one `transcribe` per note   BatchedInferencePipeline,   BatchedInferencePipeline, all
                                          one call per note           eight notes in one call
    tiny.en   3.1 s                       3.0 s                       3.4 s
    base      5.8-6.0 s                   5.6 s                       7.0 s

`BatchedInferencePipeline` batches the 30 s chunks of ONE audio, and a note shorter than 30 s is
one chunk, so per note it is `transcribe` by another road. Notes can be made one batch by
concatenating them and passing `clip_timestamps`, but on 2 cores that was 10-20 % slower (the
encoder dominates and runs a padded 30 s window per note either way; a beam-5 batch pads every
note's decoding to the longest) and it detects one language for all the notes. So a batch of
notes is transcribed one note after the other.

Long notes were measured too: on a 42 s note of varied real speech the pipeline was 10-30 %
faster (tiny.en 1.4 vs 1.6-1.75 s; base 3.2-4.4 vs 4.5-4.8 s), but it decodes once at
temperature 0, with none of `transcribe`'s fallbacks against repetition: base's WER on that note
rose from 1.0 % to 3.1 %, and on a sentence repeated ten times it wrote it eleven times. Not worth
a second code path for the few notes over 30 s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from faster_whisper import WhisperModel

from services.asr.settings import AsrSettings
from services.asr.whisper_models import WhisperModelInfo, resolve_model


class TimedText(NamedTuple):
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration_s: float
    segments: tuple[TimedText, ...]
    # exp(token-weighted mean of the segments' avg_logprob): the geometric mean probability of
    # the decoded tokens, in [0, 1]; 0 when nothing was decoded. Comparable within one model only.
    confidence: float
    processing_s: float


class Transcriber:
    def __init__(self, model: WhisperModelInfo, threads: int = 2, beam_size: int = 5) -> None:
        self.model = model
        self.beam_size = beam_size
        # Public so a benchmark can compare against the bare model with the very same weights.
        self.whisper = WhisperModel(
            str(model.path), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
        )
        # An English-only model is told so; a multilingual one detects the language per note.
        self._language = "en" if model.name.endswith(".en") else None

    @classmethod
    def from_settings(cls, settings: AsrSettings) -> Transcriber:
        return cls(resolve_model(settings.asr_model, settings.asr_model_cache_dir), settings.asr_threads, settings.asr_beam_size)

    @property
    def model_version(self) -> str:
        return self.model.version

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """One note: 16 kHz mono float32 samples."""
        started = time.perf_counter()
        segments, info = self.whisper.transcribe(audio, language=self._language, beam_size=self.beam_size, vad_filter=True)
        decoded = list(segments)  # decoding happens while the generator is consumed
        spoken = [s for s in decoded if s.text.strip()]
        return Transcript(
            text=" ".join(s.text.strip() for s in spoken),
            language=info.language,
            language_probability=float(info.language_probability),
            duration_s=float(info.duration),
            segments=tuple(TimedText(float(s.start), float(s.end), s.text.strip()) for s in spoken),
            confidence=confidence(decoded),
            processing_s=time.perf_counter() - started,
        )

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Several notes, one after the other: measured faster than batching them (module docstring)."""
        return [self.transcribe(audio) for audio in audios]


def confidence(segments: Iterable) -> float:
    """exp of the token-weighted mean avg_logprob of faster-whisper segments, clipped to [0, 1]."""
    weighted, tokens = 0.0, 0
    for segment in segments:
        count = max(len(segment.tokens), 1)
        weighted += segment.avg_logprob * count
        tokens += count
    if tokens == 0:
        return 0.0
    return min(1.0, max(0.0, math.exp(weighted / tokens)))
