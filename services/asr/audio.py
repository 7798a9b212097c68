"""Voice notes as the platforms send them -> 16 kHz mono float32 samples, or a precise rejection.

Containers (Ogg/Opus from WhatsApp and Telegram, MP4/AAC from Messenger and Instagram, MP3, WAV,
WebM from browsers) are decoded by PyAV through `faster_whisper.decode_audio`; raw PCM arrives as
`audio/L16;rate=16000` and friends. Every way an input can be unusable is a `RejectedInput` whose
message says which, so the dead-letter topic tells an operator what the producer got wrong.

Silence is decided here, cheaply, before the model runs: a clip whose RMS over its whole length is
below -60 dBFS (a muted microphone, digital silence) is rejected as silent. Audio that is loud
but holds no speech (noise, music, a tone) is left to Whisper's VAD; the core rejects its empty
transcript as "no speech recognised".
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import av
import numpy as np
from faster_whisper import decode_audio

from elmo.contracts.events import BlobAudio, InlineAudio
from elmo.runtime.stage import RejectedInput

SAMPLE_RATE = 16_000
SILENCE_RMS_DBFS = -60.0
# Read no blob larger than this: two minutes of even 48 kHz stereo float WAV is 46 MB.
MAX_BLOB_BYTES = 64 * 1024 * 1024
# A container's declared duration (header) may be an estimate (VBR MP3): reject before decoding
# only when it is clearly too long; the decoded length is checked exactly afterwards.
DECLARED_DURATION_TOLERANCE = 1.1

CONTAINER_MIME_TYPES = frozenset(
    {
        "audio/ogg", "audio/opus", "audio/mpeg", "audio/mp3", "audio/mp4", "audio/m4a", "audio/x-m4a",
        "audio/aac", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/webm",
    }
)  # fmt: skip
# Signed 16-bit little-endian samples (what our ingestors write; RFC 3551's L16 is big-endian,
# but no platform we receive from sends that).
RAW_PCM_MIME_TYPES = frozenset({"audio/l16", "audio/pcm", "audio/x-raw"})
MIME_TYPE_BY_SUFFIX = {
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
    ".mp4": "audio/mp4", ".aac": "audio/aac", ".wav": "audio/wav", ".webm": "audio/webm",
    ".raw": f"audio/L16;rate={SAMPLE_RATE}", ".pcm": f"audio/L16;rate={SAMPLE_RATE}",
}  # fmt: skip


def load_audio(audio: InlineAudio | BlobAudio, *, max_duration_s: float, blob_root: Path | None) -> np.ndarray:
    """The samples of an inbound message's audio, wherever they are; raises `RejectedInput`."""
    data = audio.data() if isinstance(audio, InlineAudio) else read_blob(audio, blob_root)
    return decode(data, audio.mime_type, max_duration_s=max_duration_s)


def load_audio_file(path: Path, *, max_duration_s: float) -> np.ndarray:
    """A local file, its format told by its suffix (`.raw`/`.pcm`: 16 kHz s16le mono)."""
    mime_type = MIME_TYPE_BY_SUFFIX.get(path.suffix.lower())
    if mime_type is None:
        raise RejectedInput(f"unknown audio file type {path.suffix!r}; known: {', '.join(sorted(MIME_TYPE_BY_SUFFIX))}")
    return decode(path.read_bytes(), mime_type, max_duration_s=max_duration_s)


def decode(data: bytes, mime_type: str, *, max_duration_s: float) -> np.ndarray:
    """16 kHz mono float32 samples in [-1, 1]; raises `RejectedInput` naming what is wrong."""
    if not data:
        raise RejectedInput("audio is empty (0 bytes)")
    media_type, parameters = parse_mime_type(mime_type)
    if media_type in RAW_PCM_MIME_TYPES:
        samples = _raw_pcm(data, parameters)
    elif media_type in CONTAINER_MIME_TYPES:
        samples = _container(data, mime_type, max_duration_s)
    else:
        accepted = ", ".join(sorted(CONTAINER_MIME_TYPES | RAW_PCM_MIME_TYPES))
        raise RejectedInput(f"unsupported audio mime type {mime_type!r}; accepted: {accepted}")

    if samples.size == 0:
        raise RejectedInput(f"no audio samples could be decoded from {len(data)} bytes of {mime_type}")
    duration_s = samples.size / SAMPLE_RATE
    if duration_s > max_duration_s:
        raise RejectedInput(f"audio is too long: {duration_s:.1f} s, the limit is {max_duration_s:g} s")
    if (level := rms_dbfs(samples)) < SILENCE_RMS_DBFS:
        raise RejectedInput(f"audio is silent: RMS {level:.1f} dBFS over {duration_s:.1f} s (threshold {SILENCE_RMS_DBFS:g} dBFS)")
    return samples


def parse_mime_type(mime_type: str) -> tuple[str, dict[str, str]]:
    """`"audio/L16; rate=16000"` -> `("audio/l16", {"rate": "16000"})`."""
    media_type, *rest = mime_type.split(";")
    parameters = {}
    for item in rest:
        name, _, value = item.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"')
    return media_type.strip().lower(), parameters


def rms_dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def _raw_pcm(data: bytes, parameters: dict[str, str]) -> np.ndarray:
    rate, channels = parameters.get("rate", str(SAMPLE_RATE)), parameters.get("channels", "1")
    if rate != str(SAMPLE_RATE) or channels != "1":
        raise RejectedInput(f"raw PCM must be {SAMPLE_RATE} Hz mono; got rate={rate}, channels={channels}")
    if len(data) % 2:
        raise RejectedInput(f"raw 16-bit PCM has an odd number of bytes ({len(data)}): truncated or not PCM")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _container(data: bytes, mime_type: str, max_duration_s: float) -> np.ndarray:
    try:
        with av.open(io.BytesIO(data), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise RejectedInput(f"{mime_type} data holds no audio stream")
            declared_s = container.duration / av.time_base if container.duration else None
        if declared_s is not None and declared_s > max_duration_s * DECLARED_DURATION_TOLERANCE:
            raise RejectedInput(f"audio is too long: {declared_s:.1f} s declared, the limit is {max_duration_s:g} s")
        return decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except (av.FFmpegError, ValueError, IndexError, EOFError) as error:
        raise RejectedInput(f"undecodable audio ({mime_type}, {len(data)} bytes): {error}") from error


def read_blob(blob: BlobAudio, root: Path | None) -> bytes:
    """The bytes a blob reference points at (`file://` only, so far), checked against its size and hash."""
    uri = urlparse(blob.uri)
    if uri.scheme != "file":
        raise RejectedInput(f"blob scheme {uri.scheme or '(none)'!r} not supported yet: only file:// URIs ({blob.uri})")
    if uri.netloc not in ("", "localhost"):
        raise RejectedInput(f"file:// blob on another host {uri.netloc!r} cannot be read ({blob.uri})")
    path = Path(url2pathname(uri.path)).resolve()  # symlinks and `..` resolved before the root check
    if root is not None and not path.is_relative_to(root.resolve()):
        raise RejectedInput(f"blob {blob.uri} is outside the allowed blob root {root}")
    if not path.is_file():
        raise RejectedInput(f"blob not found: {blob.uri}")
    size = path.stat().st_size
    if blob.size_bytes is not None and size != blob.size_bytes:
        raise RejectedInput(f"blob size mismatch: {blob.uri} has {size} bytes, the event says {blob.size_bytes}")
    if size > MAX_BLOB_BYTES:
        raise RejectedInput(f"blob is too large: {size} bytes, the limit is {MAX_BLOB_BYTES}")
    data = path.read_bytes()
    if blob.sha256 is not None and (actual := hashlib.sha256(data).hexdigest()) != blob.sha256:
        raise RejectedInput(f"blob sha256 mismatch: {blob.uri} hashes to {actual}, the event says {blob.sha256}")
    return data
