"""The model registry: statuses, a promotion gate, promotion history and rollback, over the store.

A version is saved as a `candidate`. `promote_if_better` evaluates the candidate and the current
version on the same held-out set (an `Evaluator` the model kind supplies) and promotes only when
the primary metric does not fall more than `tolerance` below the current one; otherwise the
candidate is `rejected` and kept, with the reason and both sets of metrics in its meta.json.
`rollback` moves CURRENT back to the version promoted before the current one and marks the one
it leaves `rolled_back`. Every promotion or rollback is announced as a `ModelUpdate` (keyed by
model kind, on the compacted `elmo.model-updates`), which is how running services hot-swap.

Services keep loading what CURRENT names; the registry only decides where it points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from elmo.contracts.events import ModelUpdate
from elmo.models.artifacts import ArtifactStore, ModelVersion, NoModelVersion, Status

__all__ = [
    "ConcurrentPromotion",
    "Decision",
    "Evaluator",
    "ModelRecord",
    "ModelRegistry",
    "NoModelVersion",
    "NothingToRollBack",
    "RegistrySettings",
    "Status",
]

# Meta keys that described the training data before `training_data` existed.
_LEGACY_TRAINING_KEYS = ("training_data_sha256", "examples", "seed", "vader_sources", "embedding_model")

Announce = Callable[[ModelUpdate], None]


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    model_store: Path = Field(Path(".local/model-store"), description="Directory of versioned model artefacts (a volume in a pod).")
    promotion_tolerance: float = Field(
        0.01, ge=0, description="How far a candidate's primary metric may fall below the current version's and still be promoted."
    )


class NothingToRollBack(LookupError):
    pass


class ConcurrentPromotion(RuntimeError):
    """CURRENT moved while a candidate was being evaluated against it; evaluate again."""


@dataclass(frozen=True)
class Evaluator:
    """How a model kind judges a version: metrics on a fixed held-out set, one of them primary."""

    primary_metric: str
    evaluate: Callable[[ModelVersion], Mapping[str, float]]
    held_out: str = ""  # what the metrics are measured on, for the record
    # Metrics that, when both versions have them, may not fall more than the tolerance either
    # (recent labelled traffic, say: a candidate must not forget what agents taught the current one).
    guard_metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelRecord:
    """One version as the registry shows it."""

    kind: str
    version: str
    parent_version: str | None
    created_at: str
    status: Status
    status_reason: str | None
    training_data: dict[str, Any]
    metrics: dict[str, Any]
    evaluation: dict[str, Any] | None
    current: bool
    path: Path

    @classmethod
    def of(cls, found: ModelVersion, current_version: str | None) -> ModelRecord:
        meta = found.meta
        training_data = meta.get("training_data") or {k: meta[k] for k in _LEGACY_TRAINING_KEYS if k in meta}
        return cls(
            kind=found.kind,
            version=found.version,
            parent_version=meta.get("parent_version"),
            created_at=str(meta.get("created_at", "")),
            status=Status(meta["status"]),
            status_reason=meta.get("status_reason"),
            training_data=training_data,
            metrics=meta.get("metrics", {}),
            evaluation=meta.get("evaluation"),
            current=found.version == current_version,
            path=found.path,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "parent_version": self.parent_version,
            "created_at": self.created_at,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "current": self.current,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "evaluation": self.evaluation,
            "path": str(self.path),
        }


@dataclass(frozen=True)
class Decision:
    """What a promotion or rollback did, and the announcement it made (if any)."""

    kind: str
    version: str
    promoted: bool
    reason: str
    previous_version: str | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    current_metrics: dict[str, float] = field(default_factory=dict)
    update: ModelUpdate | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "previous_version": self.previous_version,
            "candidate_metrics": self.candidate_metrics,
            "current_metrics": self.current_metrics,
            "announced": self.update is not None,
        }


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class ModelRegistry:
    def __init__(self, store: ArtifactStore, announce: Announce | None = None, tolerance: float | None = None) -> None:
        """`announce` publishes a ModelUpdate (`elmo.runtime.model_updates.KafkaAnnouncer`); None: no one is told."""
        self.store = store
        self.announce = announce
        self.tolerance = RegistrySettings().promotion_tolerance if tolerance is None else tolerance

    # --- reading ---------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        return self.store.kinds()

    def records(self, kind: str) -> list[ModelRecord]:
        current = self.store.current_version(kind)
        return [ModelRecord.of(v, current) for v in self.store.versions(kind)]

    def record(self, kind: str, version: str | None = None) -> ModelRecord:
        found = self.store.get(kind, self.resolve(kind, version)) if version else self.store.current(kind)
        return ModelRecord.of(found, self.store.current_version(kind))

    def resolve(self, kind: str, prefix: str) -> str:
        """A version from a unique prefix of it (as `git` takes short hashes)."""
        matches = [v.version for v in self.store.versions(kind) if v.version.startswith(prefix)]
        if len(matches) != 1:
            raise NoModelVersion(f"{len(matches) or 'no'} {kind} versions start with {prefix!r} in {self.store.root}")
        return matches[0]

    def history(self, kind: str) -> list[dict[str, Any]]:
        return self.store.history(kind)

    def promoted_stack(self, kind: str) -> list[str]:
        """The versions a rollback walks back through, oldest first; the last is current.

        Replayed from the history: a promotion pushes, a rollback pops back to its target; the
        version current before the first recorded move is at the bottom. A current version the
        history does not explain (moved by hand) is on top, alone.
        """
        stack: list[str] = []
        for entry in self.store.history(kind):
            if not stack and entry.get("previous"):
                stack.append(entry["previous"])  # what was current before the history began
            if entry["action"] == "promote":
                stack.append(entry["version"])
            else:
                while stack and stack[-1] != entry["version"]:
                    stack.pop()
                if not stack:
                    stack.append(entry["version"])
        current = self.store.current_version(kind)
        if current is not None and (not stack or stack[-1] != current):
            stack = [current]
        return stack

    # --- deciding --------------------------------------------------------------------------------

    def register(
        self,
        kind: str,
        write_files: Callable[[Path], None],
        training_data: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        **meta: Any,
    ) -> ModelRecord:
        """Save a candidate (never current) with what it was trained on; then `promote_if_better`."""
        saved = self.store.save(
            kind, write_files, {"training_data": dict(training_data), "metrics": dict(metrics or {}), **meta}, make_current=False
        )
        return ModelRecord.of(saved, self.store.current_version(kind))

    def promote_if_better(self, kind: str, version: str, evaluator: Evaluator, tolerance: float | None = None) -> Decision:
        """The gate: evaluate candidate and current on the same held-out set; promote or reject."""
        tolerance = self.tolerance if tolerance is None else tolerance
        candidate = self.store.get(kind, version)
        current_version = self.store.current_version(kind)
        if current_version == version:
            return self._reannounce(kind, version)
        if current_version is None:
            candidate_metrics = _numbers(evaluator.evaluate(candidate))
            return self._promote(kind, version, None, "no current version to compare with", candidate_metrics, {}, evaluator, tolerance)

        candidate_metrics = _numbers(evaluator.evaluate(candidate))
        current_metrics = _numbers(evaluator.evaluate(self.store.get(kind, current_version)))
        primary = evaluator.primary_metric
        new, old = candidate_metrics[primary], current_metrics[primary]
        regressed = [
            f"{guard} {candidate_metrics[guard]:.4f} is below current {current_version} {current_metrics[guard]:.4f} by more than the tolerance {tolerance}"
            for guard in evaluator.guard_metrics
            if guard in candidate_metrics and guard in current_metrics and candidate_metrics[guard] < current_metrics[guard] - tolerance
        ]
        if new >= old - tolerance and not regressed:
            guards = "".join(
                f"; {g} {candidate_metrics[g]:.4f} vs {current_metrics[g]:.4f}"
                for g in evaluator.guard_metrics if g in candidate_metrics and g in current_metrics
            )  # fmt: skip
            reason = f"{primary} {new:.4f} vs current {old:.4f}{guards} (tolerance {tolerance})"
            return self._promote(kind, version, current_version, reason, candidate_metrics, current_metrics, evaluator, tolerance)

        if new < old - tolerance:
            regressed.insert(0, f"{primary} {new:.4f} is below current {current_version} {old:.4f} by more than the tolerance {tolerance}")
        reason = "; ".join(regressed)
        with self.store.lock(kind):
            self.store.update_meta(
                kind,
                version,
                status=Status.REJECTED.value,
                status_reason=reason,
                status_changed_at=datetime.now(UTC).isoformat(),
                evaluation=self._evaluation(evaluator, tolerance, candidate_metrics, current_version, current_metrics),
            )
        return Decision(kind, version, False, reason, current_version, candidate_metrics, current_metrics)

    def promote(self, kind: str, version: str, reason: str = "forced: promoted without the gate") -> Decision:
        """Promote without evaluating (`elmo models promote --force`)."""
        current_version = self.store.current_version(kind)
        if current_version == version:
            return self._reannounce(kind, version)
        metrics = _numbers(self.store.get(kind, version).meta.get("metrics", {}))
        return self._promote(kind, version, current_version, reason, metrics, {}, None, None, forced=True)

    def rollback(self, kind: str) -> Decision:
        """Back to the version promoted before the current one; the current one is `rolled_back`."""
        with self.store.lock(kind):
            stack = self.promoted_stack(kind)
            if len(stack) < 2:
                raise NothingToRollBack(f"{kind}: no earlier promoted version to roll back to (history: {stack or 'empty'})")
            leaving, target = stack[-1], stack[-2]
            reason = f"rolled back from {leaving} to {target}"
            self.store.move_current(kind, target, "rollback", reason=reason)
            update = self._announce(kind, target, "rollback")
        return Decision(kind, target, True, reason, leaving, update=update)

    # --- internals -------------------------------------------------------------------------------

    def _promote(
        self,
        kind: str,
        version: str,
        expected_current: str | None,
        reason: str,
        candidate_metrics: dict[str, float],
        current_metrics: dict[str, float],
        evaluator: Evaluator | None,
        tolerance: float | None,
        forced: bool = False,
    ) -> Decision:
        with self.store.lock(kind):
            if self.store.current_version(kind) != expected_current:
                raise ConcurrentPromotion(f"{kind}: CURRENT moved from {expected_current} while {version} was judged")
            if evaluator is not None:
                evaluation = self._evaluation(evaluator, tolerance, candidate_metrics, expected_current, current_metrics)
                self.store.update_meta(kind, version, evaluation=evaluation)
            self.store.move_current(kind, version, "promote", reason=reason, forced=forced, metrics=candidate_metrics)
            update = self._announce(kind, version, "promote", candidate_metrics)
        return Decision(kind, version, True, reason, expected_current, candidate_metrics, current_metrics, update)

    def _reannounce(self, kind: str, version: str) -> Decision:
        # Promoting what is already current changes nothing but tells the services again (the way
        # to repair an announcement that failed after the store had moved).
        with self.store.lock(kind):
            update = self._announce(kind, version, "promote")
        return Decision(kind, version, True, "already current; announced again", version, update=update)

    def _announce(self, kind: str, version: str, action: str, metrics: dict[str, float] | None = None) -> ModelUpdate | None:
        found = self.store.get(kind, version)
        update = ModelUpdate(
            model_kind=kind,
            version=version,
            action=action,
            parent_version=found.meta.get("parent_version"),
            artifact_uri=found.path.resolve().as_uri(),
            metrics=metrics if metrics is not None else _numbers(found.meta.get("metrics", {})),
        )
        if self.announce is None:
            return None
        # Inside the kind's lock, so announcements reach the topic in the order CURRENT moved.
        self.announce(update)
        return update

    @staticmethod
    def _evaluation(
        evaluator: Evaluator,
        tolerance: float | None,
        candidate_metrics: dict[str, float],
        current_version: str | None,
        current_metrics: dict[str, float],
    ) -> dict[str, Any]:
        return {
            "at": datetime.now(UTC).isoformat(),
            "primary_metric": evaluator.primary_metric,
            "guard_metrics": list(evaluator.guard_metrics),
            "held_out": evaluator.held_out,
            "tolerance": tolerance,
            "candidate": candidate_metrics,
            "baseline": {"version": current_version, "metrics": current_metrics},
        }
