"""The simulated shoppers of `elmo simulate`: hidden tastes drive reactions, deterministically."""

from __future__ import annotations

from elmo.brand.catalog import Catalog, Item
from elmo.contracts.events import FeedbackKind
from elmo.tools.simulate import Shopper, Taste, feedback_events, price_quantiles, shoppers, turn_rng

CATALOG = Catalog(
    items=[
        Item(id="trail-runner", name="Trail Runner", category="shoes", price=90, stock=5, tags=["running", "trail"]),
        Item(id="road-racer", name="Road Racer", category="shoes", price=200, stock=5, tags=["running", "road"]),
        Item(id="office-loafer", name="Office Loafer", category="shoes", price=120, stock=5, tags=["office"]),
        Item(id="rain-jacket", name="Rain Jacket", category="apparel", price=80, stock=5, tags=["running", "rain"]),
    ]
)


def shopper(price_band: tuple[float, float] = (0.0, 0.5)) -> Shopper:
    taste = Taste(categories=("shoes",), tags=frozenset({"running"}), price_band=price_band)
    return Shopper(0, taste, CATALOG, price_quantiles(CATALOG))


def recs(*item_ids: str) -> list[dict]:
    return [{"item_id": item_id, "tracking_id": f"t-{item_id}"} for item_id in item_ids]


def test_likes_by_category_tag_and_price_band() -> None:
    cheap = shopper((0.0, 0.5))
    assert cheap.likes(CATALOG.get("trail-runner"))  # shoes, running, cheapest of three
    assert not cheap.likes(CATALOG.get("road-racer"))  # running, but the dearest
    assert not cheap.likes(CATALOG.get("office-loafer"))  # no liked tag
    assert not cheap.likes(CATALOG.get("rain-jacket"))  # not a favourite category
    assert shopper((0.5, 1.0)).liked_items() == ["road-racer"]


def test_same_seed_same_reactions_and_liked_items_win() -> None:
    shown = recs("trail-runner", "office-loafer", "road-racer")
    first = [shopper().react(shown, turn_rng(7, 0, s, t)) for s in range(20) for t in range(2)]
    again = [shopper().react(shown, turn_rng(7, 0, s, t)) for s in range(20) for t in range(2)]
    assert first == again
    liked_clicks = sum(r[0].clicked for r in first)
    other_clicks = sum(r[1].clicked + r[2].clicked for r in first)
    assert liked_clicks > other_clicks
    assert not any(r[1].purchased or r[2].purchased for r in first)  # only a liked item is bought
    assert all(r.clicked for reactions in first for r in reactions if r.purchased)


def test_a_bought_item_is_not_wanted_again() -> None:
    person = shopper()
    rng = turn_rng(7, 0, 0, 0)
    while not person.react(recs("trail-runner"), rng)[0].purchased:
        pass
    assert person.bought == {"trail-runner"}
    assert not person.react(recs("trail-runner"), rng)[0].liked


def test_tastes_are_drawn_from_the_seed() -> None:
    catalog_shoppers = [s.taste for s in shoppers(CATALOG, 5, seed=3)]
    assert catalog_shoppers == [s.taste for s in shoppers(CATALOG, 5, seed=3)]
    assert catalog_shoppers != [s.taste for s in shoppers(CATALOG, 5, seed=4)]


def test_feedback_names_the_reply_item_and_tracking_id() -> None:
    person = shopper()
    reply = {"event_id": "reply-1", "conversation_id": "conv-1"}
    reactions = person.react(recs("trail-runner", "office-loafer"), turn_rng(1, 0, 0, 0))
    reactions[0] = reactions[0].__class__("trail-runner", "t-trail-runner", True, True, True)
    events = feedback_events(reactions, reply, "sim-u0")
    kinds = [e.kind for e in events]
    assert kinds[:2] == [FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED]
    assert kinds[-1] is FeedbackKind.REPLY_RATED and events[-1].rating == 1
    click = events[0]
    assert (click.item_id, click.tracking_id, click.reply_event_id, click.user_id, click.conversation_id) == (
        "trail-runner", "t-trail-runner", "reply-1", "sim-u0", "conv-1"
    )
    unliked = person.react(recs("office-loafer"), turn_rng(1, 0, 0, 1))
    assert feedback_events(unliked, reply, "sim-u0")[-1].rating == -1
