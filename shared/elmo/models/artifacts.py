"""A versioned artefact store: a directory tree that works on a laptop and on a Kubernetes volume.

Layout: `<root>/<kind>/<version>/` holds the files of one model version and `meta.json` (kind,
version, parent version, created time, metrics, what it was trained on); `<root>/<kind>/CURRENT`
names the version services serve. Versions are content hashes, so training twice on the same data
with the same seed yields the same version, and a copied store stays valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CURRENT = "CURRENT"
META = "meta.json"


class NoModelVersion(LookupError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    kind: str
    version: str
    path: Path
    meta: dict[str, Any]


def _content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != META):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(
        self,
        kind: str,
        write_files: Callable[[Path], None],
        meta: dict[str, Any],
        make_current: bool = True,
    ) -> ModelVersion:
        """Write a new version with `write_files(directory)`; returns it (existing if identical)."""
        kind_dir = self.root / kind
        kind_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=kind_dir))
        try:
            write_files(staging)
            version = _content_hash(staging)
            target = kind_dir / version
            parent = self.current_version(kind)
            full_meta = {
                "kind": kind,
                "version": version,
                "parent_version": parent if parent != version else None,
                "created_at": datetime.now(UTC).isoformat(),
                **meta,
            }
            if not target.exists():
                (staging / META).write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if make_current:
            self.set_current(kind, version)
        return self.get(kind, version)

    def set_current(self, kind: str, version: str) -> None:
        if not (self.root / kind / version / META).exists():
            raise NoModelVersion(f"no {kind} version {version} in {self.root}")
        pointer = self.root / kind / CURRENT
        temporary = pointer.with_suffix(".tmp")
        temporary.write_text(version + "\n")
        os.replace(temporary, pointer)  # atomic: a reader sees the old or the new version

    def current_version(self, kind: str) -> str | None:
        try:
            return (self.root / kind / CURRENT).read_text().strip() or None
        except FileNotFoundError:
            return None

    def get(self, kind: str, version: str) -> ModelVersion:
        path = self.root / kind / version
        try:
            meta = json.loads((path / META).read_text())
        except FileNotFoundError as error:
            raise NoModelVersion(f"no {kind} version {version} in {self.root}") from error
        return ModelVersion(kind, version, path, meta)

    def current(self, kind: str) -> ModelVersion:
        version = self.current_version(kind)
        if version is None:
            raise NoModelVersion(f"no current {kind} model in {self.root}: train one with `elmo train {kind.split('-')[0]}`")
        return self.get(kind, version)

    def versions(self, kind: str) -> list[ModelVersion]:
        kind_dir = self.root / kind
        if not kind_dir.exists():
            return []
        found = [self.get(kind, p.name) for p in kind_dir.iterdir() if (p / META).exists()]
        return sorted(found, key=lambda v: v.meta.get("created_at", ""))
