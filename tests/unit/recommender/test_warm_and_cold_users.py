"""Warm users: their factors are recomputed from their interactions now; cold users: content and
popularity only."""

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from elmo.interactions import WEIGHTS, InteractionKind, UserHistory
from services.recommender.als_model import confidence
from services.recommender.core import RecommendationRequest
from tests.unit.recommender.conftest import entity, scored

PURCHASE, CLICK = WEIGHTS[InteractionKind.PURCHASE], WEIGHTS[InteractionKind.CLICK]


def ranking(recommender, history, event=None, query=None, popularity=None):
    request = RecommendationRequest(event or scored(user="warm"), history, popularity, query)
    return recommender.recommend(request)


def test_the_request_time_solve_is_implicits_recalculate_user(als):
    weights = {"phone-nova": PURCHASE + CLICK, "case-nova": CLICK, "shoe-city": 1.0}
    reference = AlternatingLeastSquares(factors=als.factors, regularization=als.params.regularization, alpha=1.0)
    reference.item_factors = als.item_factors
    columns = [als.item_row[item] for item in weights]
    row = sp.csr_matrix(
        (confidence(np.array(list(weights.values())), als.params.alpha), ([0] * len(columns), columns)), shape=(1, len(als.item_ids))
    )
    expected = reference.recalculate_user(0, row)
    assert np.allclose(als.user_vector(weights), expected, atol=1e-4)
    assert als.user_vector({"not-in-the-model": 4.0}) is None


def test_a_new_purchase_changes_the_next_ranking_without_a_refit(with_als):
    before = ranking(with_als, UserHistory())
    after = ranking(with_als, UserHistory({"phone-nova": PURCHASE}, {"phone-nova": 1_700_000_000.0}))
    assert [r.item_id for r in before] != [r.item_id for r in after]
    assert "phone-nova" not in {r.item_id for r in after}
    # Bought a phone: other phones and what goes with phones, as the simulated shoppers did.
    assert {"phone-lumen", "charger-fast"} <= {r.item_id for r in after}


def test_a_click_moves_the_ranking_and_the_clicked_item_stays_eligible(with_als):
    phone_buyer = UserHistory({"phone-nova": PURCHASE}, {"phone-nova": 1_700_000_000.0})
    clicked = UserHistory({"phone-nova": PURCHASE, "shoe-trail-runner": CLICK}, phone_buyer.purchases)
    base = [r.item_id for r in ranking(with_als, phone_buyer)]
    moved = [r.item_id for r in ranking(with_als, clicked)]
    assert moved != base and "shoe-trail-runner" in moved
    assert with_als.user_vector("warm", clicked) is not None
    assert not np.allclose(with_als.user_vector("warm", clicked), with_als.user_vector("warm", phone_buyer))


def test_cold_users_get_popularity_without_text_and_content_with_it(with_als, query):
    assert with_als.user_vector("never-seen", UserHistory()) is None
    popularity = with_als.popularity_vector({"jacket-rain": 9.0, "trip-lisbon": 5.0, "case-orbit": 2.0})
    popular = ranking(with_als, UserHistory(), scored(user="never-seen"), popularity=popularity)
    assert [r.item_id for r in popular] == ["jacket-rain", "trip-lisbon", "case-orbit"]
    text = "a city break in Portugal with good food"
    asked = ranking(with_als, UserHistory(), scored(text, user="never-seen"), query=query(text))
    assert asked[0].item_id == "trip-lisbon" and asked[0].reason == "similar to what you asked for"


def test_without_a_model_the_version_says_content_only(content_only, with_als, als):
    assert content_only.version == "content-only"
    assert with_als.version == als.version
    assert content_only.user_vector("warm", UserHistory({"phone-nova": PURCHASE})) is None
    # Filters still apply to a warm user without a model.
    found = ranking(content_only, UserHistory({"phone-nova": PURCHASE}, {"phone-nova": 1.0}), scored(entities=[entity("category", "phones")]))
    assert [r.item_id for r in found] == ["phone-lumen"]
