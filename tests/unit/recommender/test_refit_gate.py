"""What a refit from the feedback log fits on and how its gate judges it: views (impressions) are
not fitted on; the held-out purchases are ones the current version was not fitted on, and the
candidate is scored by a twin fitted without them, so memorising them wins nothing; too few
held-out users and nothing is promoted over a current version; a checkpoint whose cells hold views
is refused."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.interactions import WEIGHTS, InteractionKind, UserHistory, interaction_from_feedback
from elmo.models.artifacts import ArtifactStore
from elmo.models.registry import ModelRegistry
from services.feedback_trainer import refit as refit_module
from services.recommender import commands
from services.recommender.als_model import (
    MIN_HELD_OUT_USERS,
    MODEL_KIND,
    AlsModel,
    AlsParams,
    FeedbackCells,
    FeedbackSeen,
    HeldOutPurchases,
    InteractionLog,
)
from services.recommender.commands import CHECKPOINT_FORMAT, judge_refit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TOPIC = "elmo.feedback"
ITEMS = [f"item-{n:02d}" for n in range(60)]
GROUPS = [ITEMS[g * 15 : (g + 1) * 15] for g in range(4)]  # four tastes of 15 items: more than the top 10
BOUGHT, CLICKED = FeedbackKind.RECOMMENDATION_PURCHASED, FeedbackKind.RECOMMENDATION_CLICKED


def shoppers(users: int, purchases: int, clicks: int, seed: int, prefix: str, first_offset: int = 0) -> list[tuple[int, int, Feedback]]:
    """(partition, offset, feedback): each user buys `purchases` and clicks `clicks` distinct items of one taste."""
    rng, records, offset = random.Random(seed), [], first_offset
    for u in range(users):
        for e, item in enumerate(rng.sample(GROUPS[u % len(GROUPS)], purchases + clicks)):
            event = Feedback(conversation_id=f"{prefix}c{u}", user_id=f"{prefix}{u:03d}", channel="web", kind=BOUGHT if e < purchases else CLICKED,
                             item_id=item, created_at=T0 + timedelta(minutes=offset), event_id=f"{prefix}-{u}-{e}")  # fmt: skip
            records.append((0, offset, event))
            offset += 1
    return records


def views_of(records: list[tuple[int, int, Feedback]], first_offset: int, seed: int) -> list[tuple[int, int, Feedback]]:
    """Three impressions per user of items of any taste, as the delivery reports what it sent."""
    rng, users = random.Random(seed), sorted({e.user_id for _, _, e in records})
    return [
        (1, first_offset + n, Feedback(conversation_id="c", user_id=user, channel="web", kind=FeedbackKind.RECOMMENDATION_VIEWED,
                                       item_id=rng.choice(ITEMS), created_at=T0, event_id=f"view-{n}"))  # fmt: skip
        for n, user in enumerate(u for u in users for _ in range(3))
    ]


def fold(records: list[tuple[int, int, Feedback]]) -> FeedbackCells:
    cells = FeedbackCells()
    for partition, offset, event in records:
        cells.add(interaction_from_feedback(event), partition, offset)  # type: ignore[arg-type]
    return cells


def replayed(offsets: dict[int, tuple[int, int]], users_prefix: str | None = None) -> dict:
    return {"topic": TOPIC, "from": "earliest", "offsets": {str(p): list(r) for p, r in offsets.items()}, "users_prefix": users_prefix}


def register(registry: ModelRegistry, model: AlsModel, training_data: dict, promote: bool = False) -> str:
    version = registry.register(MODEL_KIND, model.write_files, training_data, hyper_parameters=asdict(model.params)).version
    if promote:
        registry.promote(MODEL_KIND, version)
    return version


def noise_like(model: AlsModel) -> AlsModel:
    rng = np.random.default_rng(0)
    return AlsModel(model.item_ids, rng.normal(size=model.item_factors.shape), model.user_ids, rng.normal(size=model.user_factors.shape), model.params)


# --- views ----------------------------------------------------------------------------------------


def test_views_do_not_change_the_cells_or_the_fitted_version(tmp_path: Path) -> None:
    records = shoppers(40, 3, 1, seed=2, prefix="u")
    with_views = records + views_of(records, 0, seed=3)
    cells = FeedbackCells()
    added = [cells.add(interaction_from_feedback(e), p, o) for p, o, e in with_views]  # type: ignore[arg-type]
    assert added.count(False) == 120 and cells.weights == fold(records).weights
    plain, viewed = fold(records).to_log(ITEMS), cells.to_log(ITEMS)
    for a, b in zip((plain.users, plain.items, plain.weights, plain.sequence), (viewed.users, viewed.items, viewed.weights, viewed.sequence), strict=True):
        np.testing.assert_array_equal(a, b)
    registry = ModelRegistry(ArtifactStore(tmp_path))
    params = AlsParams(factors=8, iterations=5)
    assert register(registry, AlsModel.fit(plain, params), {}) == register(registry, AlsModel.fit(viewed, params), {})


def test_a_fit_on_redis_histories_leaves_the_views_out() -> None:
    view = WEIGHTS[InteractionKind.VIEW]
    histories = {"amy": UserHistory({"x": 4.0 + 2 * view, "y": view}, {}, {"x": 2.0, "y": 1.0})}  # a click and 3 views
    log = InteractionLog.from_histories(histories, ["x", "y"])
    assert log.matrix().toarray().tolist() == [[4.0, 0.0]]


# --- what is held out -----------------------------------------------------------------------------


def test_what_a_version_was_fitted_on_comes_from_its_meta() -> None:
    replay = FeedbackSeen.of({"training_data": replayed({0: (10, 50), 1: (0, 7)}, users_prefix="shop-")})
    assert replay.covers(TOPIC, "shop-1", 0.0, 0, 10) and replay.covers(TOPIC, "shop-1", 0.0, 1, 6)
    assert not replay.covers(TOPIC, "shop-1", 0.0, 0, 50)  # newer than its range
    assert not replay.covers(TOPIC, "shop-1", 0.0, 2, 0)  # a partition it did not read
    assert not replay.covers(TOPIC, "other-1", 0.0, 0, 20)  # a user outside its prefix
    assert not replay.covers("another.topic", "shop-1", 0.0, 0, 20)
    simulated = FeedbackSeen.of({"trained_on": {"source": "simulated", "users": 2000, "seed": 13}})
    assert not simulated.covers(TOPIC, "shop-1", 0.0, 0, 0)  # no feedback at all: every purchase is new to it
    redis = FeedbackSeen.of({"trained_on": {"source": "redis"}, "created_at": T0.isoformat()})
    assert redis.covers(TOPIC, "u", T0.timestamp(), 0, 10**6) and not redis.covers(TOPIC, "u", T0.timestamp() + 1, 0, 0)


def test_held_out_purchases_are_new_to_the_current_version_and_absent_from_the_candidates_twin() -> None:
    old = shoppers(30, 3, 1, seed=1, prefix="u")  # offsets 0..119: the current version was fitted on them
    cells = fold(old)
    known = {(e.user_id, e.item_id) for _, _, e in old}
    rng, new, offset = random.Random(2), [], len(old)
    for n, user in enumerate(sorted({e.user_id for _, _, e in old})):
        # Each user buys again: an item of theirs it has not seen them with, and (even users) after it
        # one it saw them click or buy, which is not held out (that version would recall it).
        fresh = rng.choice([i for i in GROUPS[int(user[1:]) % len(GROUPS)] if (user, i) not in known])
        again = [rng.choice(sorted(i for u, i in known if u == user))] if n % 2 == 0 else []
        for item in [fresh, *again]:
            new.append((0, offset, Feedback(conversation_id="c", user_id=user, channel="web", kind=BOUGHT, item_id=item,
                                            created_at=T0 + timedelta(minutes=offset), event_id=f"again-{offset}")))  # fmt: skip
            offset += 1
    cells = fold(old + new)
    log = cells.to_log(ITEMS)
    unseen = cells.purchases_unseen(log, TOPIC, FeedbackSeen.of({"training_data": replayed({0: (0, len(old))})}))
    held = HeldOutPurchases.of(log, unseen)
    fresh_items = {e.user_id: e.item_id for _, _, e in new if (e.user_id, e.item_id) not in known}
    assert len(held) == 30 and sorted(held.targets) == sorted(fresh_items.values())
    # The old gate held out each user's last purchase: for half of them a cell the current version had seen.
    assert sum((u, t) in known for u, t in zip(sorted(fresh_items), HeldOutPurchases.of(log).targets, strict=True)) == 15
    train = held.train.matrix()  # type: ignore[union-attr]
    for user, item in fresh_items.items():
        assert train[log.user_ids.index(user), log.item_ids.index(item)] == 0
    assert train.nnz == len(log) - 30


# --- the gate -------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(ArtifactStore(tmp_path), tolerance=0.01)


def test_a_candidate_is_not_favoured_by_the_purchases_it_was_fitted_on(registry: ModelRegistry) -> None:
    # The current version learnt the four tastes from 400 earlier shoppers; the candidate is fitted
    # on 40 new ones only (3 purchases and a click each): it generalises worse, but it has seen
    # every purchase the old gate held out.
    old = shoppers(400, 5, 3, seed=1, prefix="old")
    current = AlsModel.fit(fold(old).to_log(ITEMS), AlsParams(factors=8))
    register(registry, current, replayed({0: (0, len(old))}), promote=True)
    new = shoppers(40, 3, 1, seed=2, prefix="new", first_offset=len(old))
    cells = fold(new)
    log = cells.to_log(ITEMS)
    params = AlsParams()
    candidate = AlsModel.fit(log, params)
    version = register(registry, candidate, replayed({0: (len(old), len(old) + len(new))}))

    leaky = HeldOutPurchases.of(log)  # the old gate: the candidate scored on purchases it was fitted on
    assert leaky.hit_rate(candidate) == 1.0 > leaky.hit_rate(current) + 0.01  # it would have been promoted

    decision = judge_refit(registry, version, cells, log, TOPIC, params)
    assert not decision.promoted and decision.candidate_metrics["held_out_users"] == 40
    assert decision.candidate_metrics["hit_rate_at_10"] < decision.current_metrics["hit_rate_at_10"] - 0.1
    meta = registry.store.get(MODEL_KIND, version).meta
    assert meta["status"] == "rejected" and "twin" in meta["evaluation"]["held_out"]


def test_a_candidate_that_learnt_the_tastes_beats_a_current_version_that_did_not(registry: ModelRegistry) -> None:
    records = shoppers(60, 3, 1, seed=2, prefix="u")
    cells = fold(records)
    log = cells.to_log(ITEMS)
    params = AlsParams(factors=8)
    candidate = AlsModel.fit(log, params)
    register(registry, noise_like(candidate), {"topic": TOPIC}, promote=True)  # seen nothing, knows nothing
    version = register(registry, candidate, replayed({0: (0, len(records))}))
    decision = judge_refit(registry, version, cells, log, TOPIC, params)
    assert decision.promoted and decision.candidate_metrics["held_out_users"] == 60
    assert decision.candidate_metrics["hit_rate_at_10"] > decision.current_metrics["hit_rate_at_10"] + 0.2


def test_too_few_held_out_purchases_promote_nothing_over_a_current_version(registry: ModelRegistry) -> None:
    few = MIN_HELD_OUT_USERS - 1
    records = shoppers(few, 3, 1, seed=2, prefix="u")
    cells = fold(records)
    log = cells.to_log(ITEMS)
    params = AlsParams(factors=8)
    candidate = AlsModel.fit(log, params)
    current = register(registry, noise_like(candidate), {"topic": TOPIC}, promote=True)
    version = register(registry, candidate, replayed({0: (0, len(records))}))
    decision = judge_refit(registry, version, cells, log, TOPIC, params)
    assert not decision.promoted and decision.reason.startswith(f"too few held-out purchases: {few} ")
    assert registry.store.current_version(MODEL_KIND) == current
    assert registry.store.get(MODEL_KIND, version).meta["status"] == "rejected"
    # Nothing new since the current version (a refit of the same range with another seed): 0 held out.
    registry.promote(MODEL_KIND, version)
    other = register(registry, AlsModel.fit(log, AlsParams(factors=8, seed=14)), replayed({0: (0, len(records))}))
    decision = judge_refit(registry, other, cells, log, TOPIC, params)
    assert not decision.promoted and decision.reason.startswith("too few held-out purchases: 0 ")


def test_with_no_current_version_a_candidate_is_promoted_even_on_few_purchases(registry: ModelRegistry) -> None:
    records = shoppers(5, 3, 1, seed=2, prefix="u")
    cells = fold(records)
    log = cells.to_log(ITEMS)
    params = AlsParams(factors=8)
    version = register(registry, AlsModel.fit(log, params), replayed({0: (0, len(records))}))
    decision = judge_refit(registry, version, cells, log, TOPIC, params)
    assert decision.promoted and decision.candidate_metrics["held_out_users"] == 5


# --- checkpoints ----------------------------------------------------------------------------------


def test_a_checkpoint_whose_cells_hold_views_is_refused_and_the_trainer_replays_from_earliest(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    store = ArtifactStore(tmp_path)
    commands._write_checkpoint(store, {"topic": TOPIC, "from": "earliest", "offsets": {"0": [0, 4]}, "users_prefix": None}, fold([]))
    checkpoint = commands.read_checkpoint(store)
    assert checkpoint is not None and checkpoint["format"] == CHECKPOINT_FORMAT
    assert commands.checkpoint_problem(checkpoint, TOPIC, None) is None
    # Written before views were left out: no "format".
    path = commands.checkpoint_path(store)
    path.write_text(json.dumps({k: v for k, v in checkpoint.items() if k != "format"}))
    with pytest.raises(ValueError, match="format 1.*views.*replay from earliest"):
        commands._resume(store, TOPIC, None)
    starts: list[str] = []
    monkeypatch.setattr(refit_module, "replay_and_train", lambda registry, servers, start, seed, topic: starts.append(start))
    refit_module.refit_from_log(ModelRegistry(store), "kafka:9092", 13, TOPIC)()
    path.write_text(json.dumps(checkpoint))
    refit_module.refit_from_log(ModelRegistry(store), "kafka:9092", 13, TOPIC)()
    assert starts == ["earliest", "checkpoint"]
