"""The model registry without a broker: statuses, the promotion gate, history and rollback."""

import json

import pytest

from elmo.models.artifacts import ArtifactStore, Status
from elmo.models.registry import ConcurrentPromotion, Evaluator, ModelRegistry, NothingToRollBack

KIND = "nlu-intent"


def write(content: str):
    return lambda directory: (directory / "weights.bin").write_text(content)


class Announcements(list):
    def __call__(self, update):
        self.append(update)


def scored(scores: dict[str, float], primary: str = "accuracy") -> Evaluator:
    """An evaluator that reads each version's weights and looks its score up (as a real one measures it)."""
    return Evaluator(primary, lambda v: {primary: scores[(v.path / "weights.bin").read_text()], "support": 100}, "fixture")


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(ArtifactStore(tmp_path), Announcements(), tolerance=0.01)


def candidate(registry: ModelRegistry, content: str, **training) -> str:
    return registry.register(KIND, write(content), training_data=training or {"topic": "elmo.feedback", "offsets": {"0": [0, 10]}}).version


def test_a_registered_version_is_a_candidate_with_its_training_range_and_parent(registry):
    registry.store.save(KIND, write("a"), {"metrics": {"accuracy": 0.9}})
    first = registry.store.current_version(KIND)
    version = candidate(registry, "b", topic="elmo.feedback", offsets={"0": [100, 250]})
    record = registry.record(KIND, version)
    assert record.status is Status.CANDIDATE and not record.current
    assert record.parent_version == first
    assert record.training_data == {"topic": "elmo.feedback", "offsets": {"0": [100, 250]}}
    assert record.created_at and record.kind == KIND
    assert registry.store.current_version(KIND) == first  # registering never moves CURRENT


def test_the_gate_promotes_a_candidate_within_the_tolerance_and_announces_it(registry):
    registry.store.save(KIND, write("old"), {})
    old = registry.store.current_version(KIND)
    new = candidate(registry, "new")
    decision = registry.promote_if_better(KIND, new, scored({"old": 0.900, "new": 0.895}))

    assert decision.promoted and decision.previous_version == old
    assert decision.candidate_metrics["accuracy"] == 0.895 and decision.current_metrics["accuracy"] == 0.900
    assert registry.store.current_version(KIND) == new
    record = registry.record(KIND, new)
    assert record.status is Status.PROMOTED and record.current
    assert record.evaluation["baseline"] == {"version": old, "metrics": {"accuracy": 0.9, "support": 100.0}}
    assert record.evaluation["candidate"]["accuracy"] == 0.895 and record.evaluation["tolerance"] == 0.01
    (update,) = registry.announce
    assert (update.model_kind, update.version, update.action, update.parent_version) == (KIND, new, "promote", old)
    assert update.metrics["accuracy"] == 0.895 and update.artifact_uri.endswith(f"/{KIND}/{new}")
    assert [(e["action"], e["version"], e["previous"]) for e in registry.history(KIND)][-1] == ("promote", new, old)


def test_the_gate_rejects_a_regression_beyond_the_tolerance_and_keeps_the_candidate_with_the_reason(registry):
    registry.store.save(KIND, write("old"), {})
    old = registry.store.current_version(KIND)
    new = candidate(registry, "worse")
    decision = registry.promote_if_better(KIND, new, scored({"old": 0.90, "worse": 0.885}))

    assert not decision.promoted
    assert registry.store.current_version(KIND) == old
    assert registry.announce == []
    record = registry.record(KIND, new)
    assert record.status is Status.REJECTED
    assert "accuracy 0.8850 is below current" in record.status_reason and "0.9000" in record.status_reason
    assert record.evaluation["candidate"]["accuracy"] == 0.885
    assert record.evaluation["baseline"]["metrics"]["accuracy"] == 0.90
    assert (record.path / "weights.bin").read_text() == "worse"  # kept, to be looked at
    # Same candidate with a wider tolerance passes.
    assert registry.promote_if_better(KIND, new, scored({"old": 0.90, "worse": 0.885}), tolerance=0.02).promoted


def test_a_guard_metric_that_regresses_rejects_a_candidate_the_primary_metric_would_promote(registry):
    registry.store.save(KIND, write("old"), {})
    old = registry.store.current_version(KIND)
    scores = {"old": (0.90, 1.00), "forgetful": (0.91, 0.60), "steady": (0.91, 0.995)}

    def evaluate(v):  # noqa: ANN001, ANN202
        held_out, recent = scores[(v.path / "weights.bin").read_text()]
        return {"accuracy": held_out, "recent_labelled_accuracy": recent}

    guarded = Evaluator("accuracy", evaluate, "fixture", guard_metrics=("recent_labelled_accuracy",))
    forgetful = registry.promote_if_better(KIND, candidate(registry, "forgetful"), guarded)
    assert not forgetful.promoted and registry.store.current_version(KIND) == old
    assert forgetful.reason.startswith("recent_labelled_accuracy 0.6000 is below current")
    steady = registry.promote_if_better(KIND, candidate(registry, "steady"), guarded)
    assert steady.promoted and "recent_labelled_accuracy 0.9950 vs 1.0000" in steady.reason
    assert registry.record(KIND, steady.version).evaluation["guard_metrics"] == ["recent_labelled_accuracy"]
    # Without the metric on both sides (no recent traffic yet) only the primary metric decides.
    plain = Evaluator("accuracy", lambda v: {"accuracy": 0.92}, "fixture", guard_metrics=("recent_labelled_accuracy",))
    assert registry.promote_if_better(KIND, candidate(registry, "plain"), plain).promoted


def test_the_tolerance_comes_from_ELMO_PROMOTION_TOLERANCE(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_PROMOTION_TOLERANCE", "0.05")
    assert ModelRegistry(ArtifactStore(tmp_path)).tolerance == 0.05
    monkeypatch.delenv("ELMO_PROMOTION_TOLERANCE")
    assert ModelRegistry(ArtifactStore(tmp_path)).tolerance == 0.01


def test_a_first_version_is_promoted_without_a_comparison(registry):
    version = candidate(registry, "a")
    decision = registry.promote_if_better(KIND, version, scored({"a": 0.5}))
    assert decision.promoted and decision.reason == "no current version to compare with"
    assert registry.store.current_version(KIND) == version


def test_rollback_walks_back_through_promotions_one_command_at_a_time(registry):
    versions = []
    for content in ("a", "b", "c"):
        versions.append(candidate(registry, content))
        registry.promote(KIND, versions[-1])
    a, b, c = versions
    registry.announce.clear()

    decision = registry.rollback(KIND)
    assert (decision.version, decision.previous_version) == (b, c)
    assert registry.store.current_version(KIND) == b
    assert registry.record(KIND, c).status is Status.ROLLED_BACK
    assert registry.record(KIND, c).status_reason == f"rolled back from {c} to {b}"
    assert registry.record(KIND, b).status is Status.PROMOTED
    assert [(u.action, u.version) for u in registry.announce] == [("rollback", b)]

    assert registry.rollback(KIND).version == a
    with pytest.raises(NothingToRollBack):
        registry.rollback(KIND)
    assert registry.store.current_version(KIND) == a


def test_a_promotion_after_a_rollback_rolls_back_to_what_was_serving_before_it(registry):
    a, b = candidate(registry, "a"), candidate(registry, "b")
    registry.promote(KIND, a)
    registry.promote(KIND, b)
    registry.rollback(KIND)  # back to a; b rolled back
    c = candidate(registry, "c")
    registry.promote(KIND, c)
    assert registry.promoted_stack(KIND) == [a, c]
    assert registry.rollback(KIND).version == a


def test_forcing_promotes_a_rejected_candidate_and_promoting_the_current_one_announces_it_again(registry):
    registry.store.save(KIND, write("old"), {})
    bad = candidate(registry, "bad")
    assert not registry.promote_if_better(KIND, bad, scored({"old": 0.9, "bad": 0.1})).promoted
    assert registry.promote(KIND, bad).promoted
    assert registry.record(KIND, bad).status is Status.PROMOTED
    moves = len(registry.history(KIND))
    again = registry.promote(KIND, bad)
    assert again.promoted and again.reason == "already current; announced again"
    assert len(registry.history(KIND)) == moves  # nothing moved
    assert [u.version for u in registry.announce] == [bad, bad]


def test_a_promotion_fails_when_current_moves_while_the_candidate_is_judged(registry):
    registry.store.save(KIND, write("a"), {})
    b, c = candidate(registry, "b"), candidate(registry, "c")

    def judge_while_someone_promotes(version):
        if (version.path / "weights.bin").read_text() == "b":
            registry.store.set_current(KIND, c)
        return {"accuracy": 0.9}

    with pytest.raises(ConcurrentPromotion):
        registry.promote_if_better(KIND, b, Evaluator("accuracy", judge_while_someone_promotes))
    assert registry.store.current_version(KIND) == c
    assert registry.record(KIND, b).status is Status.CANDIDATE


def test_a_store_written_before_statuses_reads_as_promoted_current_and_has_nothing_to_roll_back(tmp_path):
    for version, content in (("0000aaaa00000000", "a"), ("0000bbbb00000000", "b")):
        (tmp_path / KIND / version).mkdir(parents=True)
        (tmp_path / KIND / version / "weights.bin").write_text(content)
        meta = {"kind": KIND, "version": version, "created_at": f"2026-01-0{len(content)}", "seed": 13, "metrics": {"accuracy": 0.8}}
        (tmp_path / KIND / version / "meta.json").write_text(json.dumps(meta))
    (tmp_path / KIND / "CURRENT").write_text("0000bbbb00000000\n")
    registry = ModelRegistry(ArtifactStore(tmp_path), Announcements())

    assert [(r.version, r.status, r.current) for r in registry.records(KIND)] == [
        ("0000aaaa00000000", Status.CANDIDATE, False),
        ("0000bbbb00000000", Status.PROMOTED, True),
    ]
    assert registry.record(KIND).training_data == {"seed": 13}
    with pytest.raises(NothingToRollBack):
        registry.rollback(KIND)
    # Promoting the older one makes it rollback-able from then on.
    registry.promote(KIND, registry.resolve(KIND, "0000aaaa"))
    assert registry.rollback(KIND).version == "0000bbbb00000000"


def test_versions_resolve_from_a_unique_prefix(registry):
    version = candidate(registry, "a")
    assert registry.resolve(KIND, version[:6]) == version
    with pytest.raises(LookupError):
        registry.resolve(KIND, "zz")
