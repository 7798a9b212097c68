"""Settings: ELMO_ASR_* from the environment, and runtime batch limits fitted to voice notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.asr.settings import AsrSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ELMO_BATCH_MAX_RECORDS", "ELMO_STALL_AFTER_S", "ELMO_ASR_MODEL", "ELMO_ASR_BLOB_ROOT"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_run_locally() -> None:
    settings = AsrSettings()
    assert (settings.asr_model, settings.asr_threads, settings.asr_beam_size) == ("base", 2, 5)
    assert settings.asr_max_audio_s == 120.0
    assert settings.asr_model_cache_dir == Path(".local/models/whisper")
    assert settings.asr_blob_root is None
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_every_field_is_documented() -> None:
    assert all(field.description for field in AsrSettings.model_fields.values())


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_ASR_MODEL", "tiny.en")
    monkeypatch.setenv("ELMO_ASR_BLOB_ROOT", "/srv/blobs")
    settings = AsrSettings()
    assert settings.asr_model == "tiny.en" and settings.asr_blob_root == Path("/srv/blobs")


def test_unknown_models_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_ASR_MODEL", "large-v3")
    with pytest.raises(ValueError, match="asr_model"):
        AsrSettings()


def test_runtime_batches_are_small_and_may_run_as_long_as_their_voice_notes_need() -> None:
    settings = AsrSettings(asr_batch_size=4, asr_max_audio_s=60)
    assert settings.batch_max_records == 4
    assert settings.stall_after_s == 4 * 60 * 0.5


def test_explicit_runtime_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_BATCH_MAX_RECORDS", "2")
    monkeypatch.setenv("ELMO_STALL_AFTER_S", "30")
    settings = AsrSettings()
    assert (settings.batch_max_records, settings.stall_after_s) == (2, 30.0)
