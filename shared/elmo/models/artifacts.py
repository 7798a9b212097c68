"""A versioned artefact store: a directory tree that works on a laptop and on a Kubernetes volume.

Layout: `<root>/<kind>/<version>/` holds the files of one model version and `meta.json` (kind,
version, parent version, created time, metrics, what it was trained on, status); `<root>/<kind>/CURRENT`
names the version services serve; `<root>/<kind>/history.jsonl` records every move of CURRENT
(promotions and rollbacks), oldest first. Versions are content hashes of the files (never of
meta.json, which changes as a version is judged), so training twice on the same data with the same
seed yields the same version, and a copied store stays valid.

Every move of CURRENT goes through `move_current`, which keeps the pointer, the history and the
versions' statuses in agreement, under a file lock per kind (a trainer and a person at the
command line may promote at the same time). Stores written before statuses existed stay valid:
a version without one reads as `promoted` when it is current and `candidate` otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Literal

CURRENT = "CURRENT"
META = "meta.json"
HISTORY = "history.jsonl"
LOCK = ".lock"


class NoModelVersion(LookupError):
    pass


class Status(StrEnum):
    CANDIDATE = "candidate"  # saved, not judged yet
    PROMOTED = "promoted"  # made current (through the gate, or forced); may still be rolled back to
    REJECTED = "rejected"  # failed the promotion gate; kept, with the reason and both metrics
    ROLLED_BACK = "rolled_back"  # was current until a rollback moved away from it


Move = Literal["promote", "rollback"]


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


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)  # a reader sees the old or the new file, never half of one


@dataclass
class _KindLock:
    """Re-entrant within a process (a promotion moves CURRENT while holding the lock), exclusive
    across processes (flock on `<kind>/.lock`)."""

    guard: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    handle: IO[str] | None = None


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, _KindLock] = {}
        self._locks_guard = threading.Lock()

    @contextmanager
    def lock(self, kind: str) -> Iterator[None]:
        """Exclusive access to one kind's pointer, history and statuses."""
        with self._locks_guard:
            state = self._locks.setdefault(kind, _KindLock())
        with state.guard:
            if state.depth == 0:
                (self.root / kind).mkdir(parents=True, exist_ok=True)
                state.handle = open(self.root / kind / LOCK, "a")  # noqa: SIM115 - closed when the outermost holder leaves
                fcntl.flock(state.handle, fcntl.LOCK_EX)
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
                if state.depth == 0 and state.handle is not None:
                    fcntl.flock(state.handle, fcntl.LOCK_UN)
                    state.handle.close()
                    state.handle = None

    def save(
        self,
        kind: str,
        write_files: Callable[[Path], None],
        meta: dict[str, Any],
        make_current: bool = True,
    ) -> ModelVersion:
        """Write a new version with `write_files(directory)`; returns it (existing if identical).

        A new version is a `candidate`; with `make_current` it is promoted at once, without a gate
        (how `elmo train` bootstraps a store). The feedback loop saves with `make_current=False`
        and lets `elmo.models.registry` decide.
        """
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
                "created_at": _now(),
                "status": Status.CANDIDATE.value,
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
        """Make `version` current as a promotion without a gate (no-op if it already is)."""
        if self.current_version(kind) != version:
            self.move_current(kind, version, "promote", reason="made current directly, without the promotion gate")

    def move_current(self, kind: str, version: str, action: Move, reason: str, **details: Any) -> dict[str, Any]:
        """Point CURRENT at `version`, record the move in the history and update both statuses.

        A promotion marks `version` promoted; a rollback marks the version it leaves rolled back.
        Returns the history entry.
        """
        with self.lock(kind):
            self.get(kind, version)  # raises NoModelVersion for an unknown version
            previous = self.current_version(kind)
            entry = {"at": _now(), "action": action, "version": version, "previous": previous, "reason": reason, **details}
            if action == "promote":
                self.update_meta(kind, version, status=Status.PROMOTED.value, status_reason=reason, status_changed_at=entry["at"])
            elif previous is not None and previous != version:
                self.update_meta(
                    kind, previous, status=Status.ROLLED_BACK.value, status_reason=reason, status_changed_at=entry["at"]
                )
            with open(self.root / kind / HISTORY, "a") as history:
                history.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            _write_atomically(self.root / kind / CURRENT, version + "\n")
            return entry

    def update_meta(self, kind: str, version: str, **changes: Any) -> ModelVersion:
        """Merge `changes` into a version's meta.json (atomically; the version id does not change)."""
        with self.lock(kind):
            found = self.get(kind, version)
            meta = {**found.meta, **changes}
            _write_atomically(found.path / META, json.dumps(meta, indent=2, sort_keys=True, default=str))
            return ModelVersion(kind, version, found.path, meta)

    def history(self, kind: str) -> list[dict[str, Any]]:
        """Every move of CURRENT, oldest first."""
        try:
            lines = (self.root / kind / HISTORY).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def current_moved_at(self, kind: str) -> datetime | None:
        """When CURRENT last moved (from the history, else the pointer file's modification time)."""
        history = self.history(kind)
        if history:
            return datetime.fromisoformat(history[-1]["at"])
        try:
            return datetime.fromtimestamp((self.root / kind / CURRENT).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None

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
        if "status" not in meta:  # written before statuses existed
            meta["status"] = (Status.PROMOTED if self.current_version(kind) == version else Status.CANDIDATE).value
        return ModelVersion(kind, version, path, meta)

    def current(self, kind: str) -> ModelVersion:
        version = self.current_version(kind)
        if version is None:
            raise NoModelVersion(f"no current {kind} model in {self.root}: train one with `elmo train {kind.split('-')[0]}`")
        return self.get(kind, version)

    def get_or_current(self, kind: str, version: str | None) -> ModelVersion:
        """`version`, or the current one when it is None (how a service's model loader reads the store)."""
        return self.get(kind, version) if version else self.current(kind)

    def kinds(self) -> list[str]:
        if not self.root.exists():
            return []
        # Only directories holding versions: other caches may share the volume.
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob(f"*/{META}")))

    def versions(self, kind: str) -> list[ModelVersion]:
        kind_dir = self.root / kind
        if not kind_dir.exists():
            return []
        found = [self.get(kind, p.name) for p in kind_dir.iterdir() if (p / META).exists()]
        return sorted(found, key=lambda v: v.meta.get("created_at", ""))
