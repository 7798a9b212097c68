"""Decoding what the platforms send, and every reason to reject it, on small generated clips."""

from __future__ import annotations

import base64
import hashlib
import wave
from pathlib import Path

import numpy as np
import pytest

from elmo.contracts.events import BlobAudio, InlineAudio
from elmo.runtime.stage import RejectedInput
from elmo.tools.test_data import to_ogg_opus, transcode
from services.asr.audio import SAMPLE_RATE, decode, load_audio, load_audio_file, parse_mime_type, read_blob

TONE_HZ = 440.0
LIMIT_S = 120.0


def tone(seconds: float = 1.0, rate: int = SAMPLE_RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * SAMPLE_RATE / samples.size)


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    # 22.05 kHz like espeak-ng's output, so decoding also has to resample.
    return write_wav(tmp_path / "tone.wav", tone(rate=22_050), rate=22_050)


# --- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "mime_type", "encode"),
    [
        (".wav", "audio/wav", None),
        (".ogg", "audio/ogg", lambda src, dst: to_ogg_opus(src, dst)),
        (".mp3", "audio/mpeg", lambda src, dst: transcode(src, dst, codec="libmp3lame", container="mp3", rate=22_050)),
        (".m4a", "audio/mp4", lambda src, dst: transcode(src, dst, codec="aac", container="ipod", rate=22_050)),
        (".webm", "audio/webm", lambda src, dst: transcode(src, dst, codec="libopus", container="webm", rate=48_000)),
    ],
)
def test_containers_decode_to_16_khz_mono_float32(tone_wav: Path, suffix: str, mime_type: str, encode) -> None:
    path = tone_wav if encode is None else encode(tone_wav, tone_wav.with_suffix(suffix))

    samples = decode(path.read_bytes(), mime_type, max_duration_s=LIMIT_S)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.size / SAMPLE_RATE == pytest.approx(1.0, abs=0.05)  # AAC adds a frame of padding
    assert dominant_hz(samples) == pytest.approx(TONE_HZ, abs=2)


@pytest.mark.parametrize("mime_type", ["audio/L16;rate=16000", "audio/L16; rate=16000; channels=1", "audio/pcm", "audio/x-raw"])
def test_raw_pcm_is_read_as_16_khz_s16le(mime_type: str) -> None:
    pcm = (tone() * 32767).astype("<i2")

    samples = decode(pcm.tobytes(), mime_type, max_duration_s=LIMIT_S)

    assert np.array_equal(samples, pcm.astype(np.float32) / 32768.0)


def test_inline_audio_and_local_files_use_the_same_decoding(tone_wav: Path) -> None:
    inline = InlineAudio(data_b64=base64.b64encode(tone_wav.read_bytes()).decode(), mime_type="audio/wav")

    from_event = load_audio(inline, max_duration_s=LIMIT_S, blob_root=None)
    from_file = load_audio_file(tone_wav, max_duration_s=LIMIT_S)

    assert np.array_equal(from_event, from_file)


def test_mime_type_parameters_are_parsed() -> None:
    assert parse_mime_type('Audio/L16; rate=16000; channels="1"') == ("audio/l16", {"rate": "16000", "channels": "1"})
    assert parse_mime_type("audio/ogg; codecs=opus") == ("audio/ogg", {"codecs": "opus"})  # WhatsApp's


# --- rejections ----------------------------------------------------------------------------


def rejection(data: bytes, mime_type: str, max_duration_s: float = LIMIT_S) -> str:
    with pytest.raises(RejectedInput) as caught:
        decode(data, mime_type, max_duration_s=max_duration_s)
    return str(caught.value)


def test_zero_bytes_are_rejected() -> None:
    assert rejection(b"", "audio/ogg") == "audio is empty (0 bytes)"


def test_corrupt_bytes_are_rejected_as_undecodable() -> None:
    assert rejection(b"OggS" + bytes(range(256)) * 8, "audio/ogg").startswith("undecodable audio (audio/ogg, 2052 bytes)")


def test_unknown_mime_types_are_rejected(tone_wav: Path) -> None:
    assert rejection(tone_wav.read_bytes(), "video/quicktime").startswith("unsupported audio mime type 'video/quicktime'")


def test_audio_longer_than_the_limit_is_rejected_before_decoding(tone_wav: Path) -> None:
    assert rejection(tone_wav.read_bytes(), "audio/wav", max_duration_s=0.5) == "audio is too long: 1.0 s declared, the limit is 0.5 s"


def test_headerless_audio_longer_than_the_limit_is_rejected_after_decoding() -> None:
    pcm = (tone(seconds=2.0) * 32767).astype("<i2").tobytes()
    assert rejection(pcm, "audio/L16;rate=16000", max_duration_s=1.5) == "audio is too long: 2.0 s, the limit is 1.5 s"


def test_silence_is_rejected(tmp_path: Path) -> None:
    muted = write_wav(tmp_path / "muted.wav", tone(amplitude=0.0005))  # about -69 dBFS
    quiet = write_wav(tmp_path / "quiet.wav", tone(amplitude=0.003))  # about -53 dBFS: soft, not silent

    assert rejection(muted.read_bytes(), "audio/wav").startswith("audio is silent: RMS -69.")
    assert rejection(bytes(32_000), "audio/L16;rate=16000").startswith("audio is silent: RMS -inf dBFS")
    assert decode(quiet.read_bytes(), "audio/wav", max_duration_s=LIMIT_S).size == SAMPLE_RATE


def test_raw_pcm_of_another_rate_or_layout_is_rejected() -> None:
    pcm = (tone() * 32767).astype("<i2").tobytes()
    assert rejection(pcm, "audio/L16;rate=8000") == "raw PCM must be 16000 Hz mono; got rate=8000, channels=1"
    assert rejection(pcm, "audio/L16;rate=16000;channels=2").endswith("channels=2")
    assert rejection(pcm[:-1], "audio/pcm").startswith("raw 16-bit PCM has an odd number of bytes (31999)")


# --- blobs ---------------------------------------------------------------------------------


def blob_of(path: Path, **fields) -> BlobAudio:
    return BlobAudio(uri=path.resolve().as_uri(), mime_type="audio/wav", **fields)


def blob_rejection(blob: BlobAudio, root: Path | None) -> str:
    with pytest.raises(RejectedInput) as caught:
        read_blob(blob, root)
    return str(caught.value)


def test_a_file_blob_inside_the_root_with_matching_size_and_hash_is_read(tone_wav: Path) -> None:
    data = tone_wav.read_bytes()
    blob = blob_of(tone_wav, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    samples = load_audio(blob, max_duration_s=LIMIT_S, blob_root=tone_wav.parent)

    assert samples.size == SAMPLE_RATE


@pytest.mark.parametrize("uri", ["https://cdn.example.com/a.ogg", "http://cdn.example.com/a.ogg", "s3://bucket/a.ogg"])
def test_remote_blob_schemes_are_not_supported_yet(uri: str) -> None:
    message = blob_rejection(BlobAudio(uri=uri, mime_type="audio/ogg"), None)
    assert message.startswith(f"blob scheme '{uri.split(':')[0]}' not supported yet")


def test_a_missing_blob_is_rejected(tmp_path: Path) -> None:
    assert blob_rejection(blob_of(tmp_path / "gone.wav"), tmp_path).startswith("blob not found: file://")


def test_a_blob_outside_the_root_is_rejected_even_through_a_symlink(tmp_path: Path, tone_wav: Path) -> None:
    root = tmp_path / "blobs"
    root.mkdir()
    (root / "escape.wav").symlink_to(tone_wav)

    outside = "is outside the allowed blob root"
    assert outside in blob_rejection(blob_of(tone_wav), root)
    assert outside in blob_rejection(BlobAudio(uri=f"file://{root}/escape.wav", mime_type="audio/wav"), root)
    assert outside in blob_rejection(BlobAudio(uri=f"file://{root}/../tone.wav", mime_type="audio/wav"), root)


def test_a_blob_of_the_wrong_size_or_hash_is_rejected(tone_wav: Path) -> None:
    size = tone_wav.stat().st_size
    assert blob_rejection(blob_of(tone_wav, size_bytes=size + 1), None).startswith(
        f"blob size mismatch: {tone_wav.resolve().as_uri()} has {size} bytes, the event says {size + 1}"
    )
    assert blob_rejection(blob_of(tone_wav, sha256="0" * 64), None).startswith("blob sha256 mismatch")


def test_a_file_blob_on_another_host_is_rejected(tone_wav: Path) -> None:
    blob = BlobAudio(uri=f"file://fileserver{tone_wav.resolve()}", mime_type="audio/wav")
    assert blob_rejection(blob, None).startswith("file:// blob on another host 'fileserver'")
