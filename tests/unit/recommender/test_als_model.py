"""ALS fitting, its artefact, the held-out split and the metrics written with it."""

import numpy as np
import pytest

from elmo.interactions import UserHistory
from elmo.models.artifacts import ArtifactStore, NoModelVersion
from services.recommender.als_model import (
    MODEL_KIND,
    AlsModel,
    AlsParams,
    InteractionLog,
    fit_and_evaluate,
    hold_out_last_purchase,
    popularity_hit_rate,
)
from services.recommender.simulation import SimulationParams, simulate, synthetic_catalog

SMALL = AlsParams(factors=4)


@pytest.fixture(scope="module")
def log(catalog):
    return simulate(catalog, SimulationParams(users=800, seed=3))


def test_fitting_is_deterministic_for_a_seed_whatever_the_threads(log):
    one = AlsModel.fit(log, SMALL, threads=1)
    two = AlsModel.fit(log, SMALL, threads=2)
    assert np.array_equal(one.item_factors, two.item_factors) and np.array_equal(one.user_factors, two.user_factors)
    other = AlsModel.fit(log, AlsParams(factors=4, seed=99))
    assert not np.allclose(one.item_factors, other.item_factors)


def test_the_artefact_round_trips_and_its_version_is_its_content(log, tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(NoModelVersion, match="elmo train recommender"):
        AlsModel.load(store)
    model = AlsModel.fit(log, SMALL)
    first = model.save(store, {"metrics": {"hit_rate_at_10_als": 0.5}})
    again = AlsModel.fit(log, SMALL).save(store, {"metrics": {"hit_rate_at_10_als": 0.5}})
    assert first.version == again.version == store.current_version(MODEL_KIND)
    loaded = AlsModel.load(store)
    assert loaded.version == first.version and loaded.params == SMALL
    assert loaded.item_ids == model.item_ids and loaded.user_ids == model.user_ids
    assert np.array_equal(loaded.item_factors, model.item_factors) and np.array_equal(loaded.user_factors, model.user_factors)
    assert loaded.meta["metrics"] == {"hit_rate_at_10_als": 0.5} and loaded.meta["hyper_parameters"]["factors"] == 4
    assert (first.path / "als.npz").exists()


def test_histories_become_a_matrix_of_accumulated_weights():
    histories = {
        "b": UserHistory({"x": 5.0, "unknown": 3.0}, {}),
        "a": UserHistory({"x": 1.0, "y": 14.0}, {"y": 100.0}),
    }
    log = InteractionLog.from_histories(histories, ["x", "y"])
    assert log.user_ids == ["a", "b"]
    assert log.matrix().toarray().tolist() == [[1.0, 14.0], [5.0, 0.0]]
    assert log.purchases.tolist() == [False, True, False] and log.times.tolist() == [0.0, 100.0, 0.0]


def test_the_held_out_item_is_each_users_last_purchase_with_every_trace_of_it_removed():
    histories = {
        "two-purchases": UserHistory({"a": 15.0, "b": 11.0, "c": 1.0}, {"a": 10.0, "b": 20.0}),
        "one-purchase": UserHistory({"a": 10.0, "c": 4.0}, {"a": 5.0}),
    }
    log = InteractionLog.from_histories(histories, ["a", "b", "c"])
    held = hold_out_last_purchase(log)
    assert [log.user_ids[u] for u in held.users] == ["two-purchases"]
    assert [log.item_ids[i] for i in held.items] == ["b"]
    train = held.train.matrix().toarray()
    assert train[log.user_ids.index("two-purchases")].tolist() == [15.0, 0.0, 1.0]
    assert train[log.user_ids.index("one-purchase")].tolist() == [10.0, 0.0, 4.0]


def test_als_finds_held_out_purchases_at_least_twice_as_often_as_popularity():
    catalog = synthetic_catalog(400, seed=11)
    log = simulate(catalog, SimulationParams(users=4000, seed=11))
    model, evaluation = fit_and_evaluate(log, AlsParams(factors=32), threads=2)
    assert evaluation.held_out_users > 500
    assert evaluation.hit_rate_at_10_als >= 2 * evaluation.hit_rate_at_10_popularity > 0
    assert evaluation.as_metrics()["hit_rate_at_10_als"] == round(evaluation.hit_rate_at_10_als, 4)
    # The served model is fitted on everything, the evaluated one without the held-out purchases.
    assert model.user_factors.shape[0] == len(log.user_ids)
    held = hold_out_last_purchase(log)
    assert popularity_hit_rate(held) == evaluation.hit_rate_at_10_popularity
