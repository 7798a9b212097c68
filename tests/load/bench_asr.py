"""Benchmark: the asr core against bare faster-whisper, on real speech, for both models.

On pocketsphinx's five LibriVox clips (fetched from PyPI by `elmo.tools.test_data`), with the same
loaded model and threads, in one process:
  (a) raw: `WhisperModel.transcribe(path)` straight from faster-whisper (it decodes the file);
  (b) core: `services.asr.core.transcribe_batch` on inbound events carrying the clips inline
      (base64 -> PyAV decode -> checks -> transcribe -> Utterance).
Reports each path's real-time factor (processing s / audio s; the best of `--repeats` passes,
the two paths alternating), their ratio (target: core within 1.1x of raw), corpus WER per model,
and the process's peak RSS after each model (one model is loaded at a time).

Run: `.venv/bin/python tests/load/bench_asr.py` (CPU-heavy for about a minute on 2 cores).
Results are printed as a table and written as JSON to `.local/bench/asr.json`.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from faster_whisper import decode_audio

from elmo.contracts.events import InboundMessage, InlineAudio, Utterance
from elmo.tools.test_data import default_dest, fetch_pocketsphinx
from services.asr.core import transcribe_batch
from services.asr.settings import AsrSettings
from services.asr.transcriber import Transcriber
from services.asr.wer import corpus_wer

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / ".local" / "bench" / "asr.json"
TARGET_RATIO = 1.1


@dataclass(frozen=True)
class Clip:
    path: Path
    reference: str
    duration_s: float


@dataclass
class ModelResult:
    model: str
    model_version: str
    clips: int
    audio_s: float
    raw_rtf: float
    core_rtf: float
    core_over_raw: float
    raw_wer: float
    core_wer: float
    load_s: float
    peak_rss_mb: float


def librivox_clips(dest: Path) -> list[Clip]:
    folder = fetch_pocketsphinx(dest) / "test" / "data" / "librivox"
    return [
        Clip(wav, wav.with_suffix(".txt").read_text().strip(), decode_audio(str(wav)).size / 16_000)
        for wav in sorted(folder.glob("*.wav"))
    ]


def inbound_events(clips: list[Clip]) -> list[InboundMessage]:
    return [
        InboundMessage(
            conversation_id=f"bench-{i}",
            user_id="bench",
            channel="whatsapp",
            audio=InlineAudio(data_b64=base64.b64encode(clip.path.read_bytes()).decode(), mime_type="audio/wav"),
        )
        for i, clip in enumerate(clips)
    ]


def run_raw(transcriber: Transcriber, clips: list[Clip], language: str | None) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = []
    for clip in clips:
        segments, _ = transcriber.whisper.transcribe(
            str(clip.path), language=language, beam_size=transcriber.beam_size, vad_filter=True
        )
        texts.append(" ".join(s.text.strip() for s in segments))
    return time.perf_counter() - started, texts


def run_core(transcriber: Transcriber, events: list[InboundMessage], settings: AsrSettings) -> tuple[float, list[str]]:
    started = time.perf_counter()
    results = transcribe_batch(events, transcriber, settings)
    elapsed = time.perf_counter() - started
    for result in results:
        if not isinstance(result, Utterance):
            raise RuntimeError(f"the core rejected a benchmark clip: {result}")
    return elapsed, [r.text for r in results]  # type: ignore[union-attr]


def bench_model(name: str, clips: list[Clip], repeats: int, threads: int, beam_size: int) -> ModelResult:
    settings = AsrSettings(asr_model=name, asr_threads=threads, asr_beam_size=beam_size)
    started = time.perf_counter()
    transcriber = Transcriber.from_settings(settings)
    load_s = time.perf_counter() - started
    language = "en" if name.endswith(".en") else None
    events = inbound_events(clips)
    run_raw(transcriber, clips[:1], language)  # warm-up: first-call allocations, VAD model load

    raw_times, core_times = [], []
    for _ in range(repeats):
        raw_s, raw_texts = run_raw(transcriber, clips, language)
        core_s, core_texts = run_core(transcriber, events, settings)
        raw_times.append(raw_s)
        core_times.append(core_s)

    audio_s = sum(c.duration_s for c in clips)
    raw_rtf, core_rtf = min(raw_times) / audio_s, min(core_times) / audio_s
    result = ModelResult(
        model=name,
        model_version=transcriber.model_version,
        clips=len(clips),
        audio_s=round(audio_s, 2),
        raw_rtf=round(raw_rtf, 4),
        core_rtf=round(core_rtf, 4),
        core_over_raw=round(core_rtf / raw_rtf, 3),
        raw_wer=round(corpus_wer(zip([c.reference for c in clips], raw_texts)), 4),
        core_wer=round(corpus_wer(zip([c.reference for c in clips], core_texts)), 4),
        load_s=round(load_s, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
    )
    del transcriber
    gc.collect()
    return result


def print_table(results: list[ModelResult]) -> None:
    header = (
        f"{'model':8} {'audio s':>8} {'raw RTF':>8} {'core RTF':>9} {'core/raw':>9} "
        f"{'raw WER':>8} {'core WER':>9} {'load s':>7} {'peak RSS MB':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.model:8} {r.audio_s:8.1f} {r.raw_rtf:8.3f} {r.core_rtf:9.3f} {r.core_over_raw:9.3f} "
            f"{r.raw_wer:8.1%} {r.core_wer:9.1%} {r.load_s:7.2f} {r.peak_rss_mb:12.0f}"
        )
    verdict = all(r.core_over_raw <= TARGET_RATIO for r in results)
    print(f"\ncore within {TARGET_RATIO}x of raw faster-whisper: {'yes' if verdict else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=3, help="Passes per path; the fastest counts.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--data", type=Path, default=default_dest(), help="Where test data is fetched to.")
    args = parser.parse_args()

    clips = librivox_clips(args.data)
    results = [bench_model(name, clips, args.repeats, args.threads, args.beam_size) for name in args.models]
    print_table(results)

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "asr",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "threads": args.threads,
            "beam_size": args.beam_size,
            "repeats": args.repeats,
            "vad_filter": True,
            "compute_type": "int8",
        },
        "data": "pocketsphinx 5.1.1 test/data/librivox (5 clips)",
        "results": [asdict(r) for r in results],
    }
    OUTPUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {OUTPUT}")


if __name__ == "__main__":
    main()
