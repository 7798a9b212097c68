"""Learning a user's taste from their reactions: clicks and purchases pull the next recommendations
towards what they liked; views (impressions: what the recommender chose to show) teach nothing
about taste and push what was shown and ignored down; a cold user is unaffected."""

import numpy as np
import pytest

from elmo.brand.catalog import load_catalog
from elmo.contracts.events import Entity
from elmo.interactions import WEIGHTS, InteractionKind, UserHistory
from elmo.tools.simulate import Window, shoppers, turn_rng
from services.recommender.als_model import AlsModel, AlsParams
from services.recommender.core import RecommendationRequest, Recommender
from services.recommender.item_index import ItemIndex
from services.recommender.simulation import SimulationParams, simulate
from tests.unit.recommender.conftest import entity, scored

VIEW, CLICK, PURCHASE = (WEIGHTS[k] for k in (InteractionKind.VIEW, InteractionKind.CLICK, InteractionKind.PURCHASE))
TRAIL = {"hoodie-trail", "jacket-rain", "shoe-trail-runner", "trip-alps-hiking"}  # the fixture's "trail" collection
POPULAR = {"tee-basic": 9.0, "phone-lumen": 8.0, "trip-lisbon": 7.0, "shoe-city": 5.0, "charger-fast": 4.0}


def shown_then(views: dict[str, float], clicks: dict[str, float] | None = None) -> UserHistory:
    """A history as the store keeps it: each view and click adds its weight, views are counted apart."""
    weights = {item: VIEW * count for item, count in views.items()}
    for item, count in (clicks or {}).items():
        weights[item] = weights.get(item, 0.0) + CLICK * count
    return UserHistory(weights, {}, dict(views))


def top(recommender: Recommender, history: UserHistory, k: int = 5, user: str = "u-taste", entities: list[Entity] | None = None) -> list[str]:
    recommender.top_k = k
    popularity = recommender.popularity_vector(POPULAR)
    return [r.item_id for r in recommender.recommend(RecommendationRequest(scored(user=user, entities=entities), history, popularity))]


def test_engagement_is_the_weight_without_the_views():
    history = shown_then({"hoodie-trail": 2, "tee-basic": 3}, clicks={"hoodie-trail": 1})
    assert history.engagement == {"hoodie-trail": CLICK}
    # A history recorded before views were counted apart keeps all its weight.
    assert UserHistory({"tee-basic": 3.0}).engagement == {"tee-basic": 3.0}


def test_clicks_on_one_collection_pull_the_next_top_k_towards_it(with_als):
    cold = top(with_als, UserHistory())
    clicked = top(with_als, shown_then({"hoodie-trail": 1, "jacket-rain": 1}, clicks={"hoodie-trail": 1, "jacket-rain": 1}))
    assert len(TRAIL & set(clicked)) > len(TRAIL & set(cold)) + 1
    # Not only the clicked items (a click does not make an item unavailable): more of the same line.
    assert "shoe-trail-runner" in clicked and "shoe-trail-runner" not in cold


def test_views_alone_teach_no_taste_and_push_what_was_shown_down(with_als):
    cold = top(with_als, UserHistory(), k=3)
    viewed = shown_then({"hoodie-trail": 1, "jacket-rain": 1})
    assert with_als.user_vector("u-taste", viewed) is None  # no factors from what the user was shown
    assert not TRAIL & set(top(with_als, viewed, k=3))
    # "What other ...?": shown once and ignored, the first answer gives way to the next items
    # (halved, not removed: the most popular still beats the items nobody wants).
    again = top(with_als, shown_then(dict.fromkeys(cold, 1)), k=3)
    assert again[:2] == top(with_als, UserHistory(), k=5)[3:] and again[2] in cold
    assert top(with_als, shown_then(dict.fromkeys(cold, 3)), k=2) == again[:2]


def test_a_clicked_item_is_not_discounted_for_having_been_shown(with_als):
    cold = top(with_als, UserHistory(), k=3)
    history = shown_then(dict.fromkeys(cold, 2), clicks={cold[0]: 1})
    assert cold[0] in top(with_als, history, k=3)
    assert not set(cold[1:]) & set(top(with_als, history, k=3))


def test_a_cold_user_is_unaffected(with_als, content_only):
    assert with_als.user_vector("never-seen", UserHistory()) is None
    assert top(with_als, UserHistory()) == sorted(POPULAR, key=lambda item: -POPULAR[item])
    # Another user's clicks change nothing for them (only popularity is shared, and it is passed in).
    top(with_als, shown_then({"hoodie-trail": 1}, clicks={"hoodie-trail": 3}), user="someone-else")
    assert top(with_als, UserHistory(), user="never-seen") == top(content_only, UserHistory(), user="never-seen")


def test_a_category_asked_for_still_bounds_what_the_taste_pulls_in(with_als):
    history = shown_then({"hoodie-trail": 1, "jacket-rain": 1}, clicks={"hoodie-trail": 1, "jacket-rain": 1})
    shoes = top(with_als, history, k=3, entities=[entity("category", "shoes")])
    assert shoes[0] == "shoe-trail-runner" and set(shoes) <= {"shoe-trail-runner", "shoe-city"}


# --- the loop of `elmo simulate`, in process -----------------------------------------------------


@pytest.fixture(scope="module")
def brand_recommender() -> Recommender:
    """The brand catalog, ALS fitted as `elmo train recommender` does (fewer users), no text vectors
    (the shoppers only name a category, so the taste must come from their reactions)."""
    catalog = load_catalog()
    model = AlsModel.fit(simulate(catalog, SimulationParams(users=2000, seed=13)), AlsParams(seed=13))
    return Recommender(ItemIndex(catalog), np.zeros((len(catalog.items), 8), dtype=np.float32), model, top_k=3)


def play(recommender: Recommender, learning: bool, users: int = 60, sessions: int = 4, turns: int = 2, seed: int = 7) -> list[Window]:
    """`elmo simulate`'s shoppers and reactions against the core, with the store's bookkeeping:
    views of what is shown always (the delivery), clicks and purchases with learning on."""
    catalog = recommender.index.catalog
    weights: dict[str, dict[str, float]] = {}
    views: dict[str, dict[str, float]] = {}
    purchases: dict[str, dict[str, float]] = {}
    popularity: dict[str, float] = {}
    windows = [Window() for _ in range(sessions)]
    for session in range(sessions):
        for person in shoppers(catalog, users, seed):
            user = f"u{person.index}"
            category = person.session_category(turn_rng(seed, person.index, session, -1))
            for turn in range(turns):
                rng = turn_rng(seed, person.index, session, turn)
                history = UserHistory(dict(weights.get(user, {})), dict(purchases.get(user, {})), dict(views.get(user, {})))
                event = scored(f"any other {category}?", user=user, entities=[entity("category", category)])
                shown = recommender.recommend(RecommendationRequest(event, history, recommender.popularity_vector(popularity)))
                reactions = person.react([{"item_id": r.item_id} for r in shown], rng)
                window = windows[session]
                window.shown += len(reactions)
                window.liked += sum(r.liked for r in reactions)
                window.clicks += sum(r.clicked for r in reactions)
                for reaction in reactions:
                    item = reaction.item_id
                    views.setdefault(user, {})[item] = views.get(user, {}).get(item, 0.0) + 1
                    weights.setdefault(user, {})[item] = weights.get(user, {}).get(item, 0.0) + VIEW
                    engaged = (CLICK if reaction.clicked else 0.0) + (PURCHASE if reaction.purchased else 0.0)
                    if learning and engaged:
                        weights[user][item] += engaged
                        popularity[item] = popularity.get(item, 0.0) + engaged
                        if reaction.purchased:
                            purchases.setdefault(user, {})[item] = float(session)
    return windows


def test_with_learning_the_liked_share_rises_over_sessions_and_without_it_does_not(brand_recommender):
    liked = {learning: [w.rates()["liked_share"] for w in play(brand_recommender, learning)] for learning in (False, True)}
    late = {learning: np.mean(shares[2:]) for learning, shares in liked.items()}
    assert late[True] > liked[True][0] + 0.05, liked  # learns over sessions
    assert late[True] > late[False] + 0.05, liked  # from the reactions, not from the views
    assert late[False] < liked[False][0] + 0.05, liked  # without reactions, no trend upwards
