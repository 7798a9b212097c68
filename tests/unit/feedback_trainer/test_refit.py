"""ALS refits from the feedback log: the users x items matrix is a pure function of the records (not
of their order or of a checkpoint in between; views left out), ties go by offset order, the same log and seed give
the same version, the gate judges on held-out last purchases, and the trigger runs one refit at a time."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.interactions import InteractionKind, interaction_from_feedback
from elmo.models.artifacts import ArtifactStore
from elmo.models.registry import ModelRegistry
from services.feedback_trainer.refit import Refitter, RefitTrigger
from services.recommender.als_model import MODEL_KIND, AlsModel, AlsParams, FeedbackCells, HeldOutPurchases, hold_out_last_purchase
from services.recommender.commands import RefitInProgress, _replay_lock

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ITEMS = [f"item-{n:02d}" for n in range(20)]
KINDS = [FeedbackKind.RECOMMENDATION_VIEWED, FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED]


def shoppers(users: int = 60, events: int = 12, seed: int = 5) -> list[tuple[int, int, Feedback]]:
    """(partition, offset, feedback): two taste groups over the first and second half of ITEMS."""
    rng = random.Random(seed)
    records, offsets = [], [0, 0, 0]
    for u in range(users):
        liked = ITEMS[:10] if u % 2 else ITEMS[10:]
        partition = u % 3
        for e in range(events):
            kind = rng.choice(KINDS)
            event = Feedback(conversation_id=f"c{u}", user_id=f"u{u:03d}", channel="web", kind=kind, item_id=rng.choice(liked),
                             created_at=T0 + timedelta(minutes=e), event_id=f"fb-{u}-{e}")  # fmt: skip
            records.append((partition, offsets[partition], event))
            offsets[partition] += 1
    return records


def fold(records, cells: FeedbackCells | None = None) -> FeedbackCells:  # noqa: ANN001
    cells = cells or FeedbackCells()
    for partition, offset, event in records:
        interaction = interaction_from_feedback(event)
        if interaction is not None:
            cells.add(interaction, partition, offset)
    return cells


def save(registry: ModelRegistry, model: AlsModel) -> str:
    return registry.register(MODEL_KIND, model.write_files, {}, hyper_parameters=asdict(model.params)).version


def arrays(log) -> list[np.ndarray]:  # noqa: ANN001
    return [log.users, log.items, log.weights, log.times, log.purchases, log.sequence]


def test_the_matrix_does_not_depend_on_record_order_or_a_checkpoint_in_between(tmp_path: Path) -> None:
    records = shoppers()
    whole = fold(records).to_log(ITEMS)
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    reordered = fold(shuffled).to_log(ITEMS)
    fold(records[:300]).write(tmp_path / "cells.npz")
    resumed = fold(records[300:], FeedbackCells.read(tmp_path / "cells.npz")).to_log(ITEMS)
    for other in (reordered, resumed):
        assert other.user_ids == whole.user_ids == sorted(whole.user_ids)
        for a, b in zip(arrays(whole), arrays(other), strict=True):
            np.testing.assert_array_equal(a, b)
    # Summed weights: every click and purchase of the log is in the matrix once; views are not.
    interactions = [interaction_from_feedback(e) for _, _, e in records]
    total = sum(i.weight for i in interactions if i is not None and i.kind is not InteractionKind.VIEW)
    assert whole.matrix().sum() == pytest.approx(total) and total < sum(i.weight for i in interactions if i is not None)


def test_items_outside_the_catalog_are_dropped_and_users_left_without_items_too() -> None:
    events = [
        Feedback(conversation_id="c", user_id="zed", channel="web", kind=FeedbackKind.RECOMMENDATION_CLICKED, item_id="not-sold", created_at=T0),
        Feedback(conversation_id="c", user_id="amy", channel="web", kind=FeedbackKind.RECOMMENDATION_CLICKED, item_id="item-03", created_at=T0),
    ]  # fmt: skip
    log = fold([(0, n, e) for n, e in enumerate(events)]).to_log(ITEMS)
    assert log.user_ids == ["amy"] and len(log) == 1 and log.item_ids[log.items[0]] == "item-03"


def test_equal_purchase_times_are_ordered_by_offset_not_by_item_id() -> None:
    def bought(item: str) -> Feedback:
        return Feedback(conversation_id="c", user_id="amy", channel="web", kind=FeedbackKind.RECOMMENDATION_PURCHASED, item_id=item, created_at=T0)

    # item-09 bought at offset 5, item-01 at offset 7, same time: the last purchase is item-01.
    log = fold([(2, 5, bought("item-09")), (2, 7, bought("item-01"))]).to_log(ITEMS)
    held = hold_out_last_purchase(log)
    assert [log.item_ids[i] for i in held.items] == ["item-01"]
    log = fold([(2, 5, bought("item-01")), (2, 7, bought("item-09"))]).to_log(ITEMS)
    assert [log.item_ids[i] for i in hold_out_last_purchase(log).items] == ["item-09"]


def test_the_same_log_and_seed_give_the_same_version_and_another_seed_another(tmp_path: Path) -> None:
    log = fold(shoppers()).to_log(ITEMS)
    registry = ModelRegistry(ArtifactStore(tmp_path))

    def version(seed: int) -> str:
        model = AlsModel.fit(log, AlsParams(factors=8, iterations=5, seed=seed))
        return registry.register(MODEL_KIND, model.write_files, {"seed": seed}).version

    first = version(13)
    assert version(13) == first
    assert version(14) != first
    assert len(registry.records(MODEL_KIND)) == 2


def test_the_gate_promotes_a_fitted_model_and_rejects_a_worse_one(tmp_path: Path) -> None:
    log = fold(shoppers(users=120, events=16)).to_log(ITEMS)
    held = HeldOutPurchases.of(log)
    assert len(held) > 30
    registry = ModelRegistry(ArtifactStore(tmp_path), tolerance=0.01)
    good = AlsModel.fit(log, AlsParams(factors=8, iterations=10))
    decision = registry.promote_if_better(MODEL_KIND, save(registry, good), held.evaluator())
    assert decision.promoted and decision.candidate_metrics["hit_rate_at_10"] > 0.7  # 10 liked items, top 10
    # Factors that know nothing of the tastes: same shapes, random values.
    rng = np.random.default_rng(0)
    noise = AlsModel(good.item_ids, rng.normal(size=good.item_factors.shape), good.user_ids, rng.normal(size=good.user_factors.shape), good.params)
    decision = registry.promote_if_better(MODEL_KIND, save(registry, noise), held.evaluator())
    assert not decision.promoted and decision.candidate_metrics["hit_rate_at_10"] < decision.current_metrics["hit_rate_at_10"] - 0.01
    assert registry.store.current_version(MODEL_KIND) == registry.records(MODEL_KIND)[0].version


def test_the_trigger_fires_after_n_interactions_or_after_the_interval_if_any_arrived() -> None:
    trigger = RefitTrigger(after=500, interval_s=3600, started_at=0.0)
    trigger.add(499)
    assert not trigger.due(10.0)
    trigger.add(1)
    assert trigger.due(10.0)
    assert trigger.take(10.0) == 500 and trigger.pending == 0
    assert not trigger.due(10.0 + 3600)  # nothing new since the last refit
    trigger.add(3)
    assert not trigger.due(10.0 + 3599) and trigger.due(10.0 + 3600)
    taken = trigger.take(4000.0)
    trigger.put_back(taken)  # that refit failed: its interactions still count
    assert trigger.pending == 3
    # A fresh process refits once after the interval even with nothing new (a restart may follow events).
    assert RefitTrigger(after=500, interval_s=3600, started_at=0.0).due(3600.0)


def test_only_one_refit_runs_at_a_time_and_consuming_never_waits_for_it() -> None:
    release = threading.Event()
    calls: list[int] = []

    def refit():  # noqa: ANN202
        calls.append(1)
        release.wait(10)
        raise RuntimeError("no broker in a unit test")  # a failed refit puts its interactions back

    async def run() -> None:
        now = [0.0]
        refitter = Refitter(refit, RefitTrigger(after=10, interval_s=3600), clock=lambda: now[0])
        refitter.record(10)
        assert refitter.running
        for _ in range(5):  # batches keep coming while it runs: each returns at once, none starts another
            refitter.record(10)
            await asyncio.sleep(0.01)
        assert len(calls) == 1 and refitter.trigger.pending == 50
        release.set()
        await refitter.close()
        outcomes = {s.labels["outcome"]: s.value for s in refitter.metrics.refits.collect()[0].samples if s.name.endswith("_total")}
        assert outcomes == {"failed": 1.0} and refitter.trigger.pending == 60

    asyncio.run(run())


def test_the_replay_lock_refuses_a_second_replay_on_the_same_store(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with _replay_lock(store):
        with pytest.raises(RefitInProgress), _replay_lock(store):
            pass
    with _replay_lock(store):  # released
        pass
