import json

import pytest

from elmo.brand.catalog import DEFAULT_BRAND_DIR, BrandDataError, load_catalog
from elmo.brand.knowledge import load_knowledge
from elmo.brand.profile import BrandProfile, load_profile, parse_profile


@pytest.fixture(scope="module")
def profile() -> BrandProfile:
    return load_profile(DEFAULT_BRAND_DIR / "brand.json")


def raw_profile() -> dict:
    return json.loads((DEFAULT_BRAND_DIR / "brand.json").read_text())


def test_the_demo_profile_loads(profile):
    assert profile.name == "Northwind Market"
    assert profile.shop_url == "https://shop.northwind.example"
    assert profile.currency == load_catalog(DEFAULT_BRAND_DIR / "catalog.json").currency == "EUR"
    assert profile.promotion_rules.never_when_sentiment == ["negative"]
    assert {"complaint", "return_refund", "human_handoff", "order_status"} <= set(profile.promotion_rules.never_for_intents)
    assert profile.promotion_rules.max_recommendations == 3
    hours = load_knowledge(DEFAULT_BRAND_DIR / "knowledge.json").by_id(profile.handoff.hours)
    assert hours.topic == "contact"


def test_banned_phrases_match_whole_words_in_any_case(profile):
    assert profile.banned_in("This is the CHEAPEST phone, 100% sure") == ["cheapest", "100%"]
    assert profile.banned_in("a cheaper option") == []
    assert profile.banned_in("we guarantee it") == ["guarantee"]


def test_item_url(profile):
    assert profile.item_url("tee-classic") == "https://shop.northwind.example/p/tee-classic"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(greeting="Hi! Ask us anything 24/7"), "greeting: .*has digits"),
        (lambda p: p["handoff"].update(message="Call 0800 123 456"), "handoff.message: .*has digits"),
        (lambda p: p["promotion_rules"].update(never_when_sentiment=["angry"]), "never_when_sentiment.0"),
        (lambda p: p["promotion_rules"].update(max_recommendations=50), "max_recommendations"),
        (lambda p: p.update(banned_phrases=["cheap", "Cheap"]), "banned phrases repeat"),
        (lambda p: p.update(currency="euro"), "currency"),
        (lambda p: p.update(shop_url="shop.northwind.example"), "shop_url"),
        (lambda p: p.pop("handoff"), "handoff: Field required"),
    ],
)
def test_invalid_profiles_are_rejected_with_the_field_named(change, message):
    data = raw_profile()
    change(data)
    with pytest.raises(BrandDataError, match=message):
        parse_profile(data)


def test_a_trailing_slash_is_dropped_from_the_shop_url():
    assert parse_profile(raw_profile() | {"shop_url": "https://example.org/shop/"}).shop_url == "https://example.org/shop"
