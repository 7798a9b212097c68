"""When the recommender suggests anything, and which items it may suggest."""

import pytest

from elmo.interactions import UserHistory
from services.recommender.core import RECOMMENDING_INTENTS, RecommendationRequest, requested_attributes
from tests.unit.recommender.conftest import entity, scored


def ids(recommender, event, history=UserHistory(), query=None, popularity=None):
    return [r.item_id for r in recommender.recommend(RecommendationRequest(event, history, popularity, query))]


@pytest.mark.parametrize("intent", sorted(RECOMMENDING_INTENTS))
def test_shopping_intents_get_recommendations(content_only, intent):
    assert len(ids(content_only, scored(intent=intent))) == 3


@pytest.mark.parametrize("intent", ["complaint", "greeting", "order_status", "return_refund", "human_handoff", "thanks"])
def test_other_intents_and_complaints_get_none(content_only, intent):
    assert ids(content_only, scored(intent=intent)) == []


def test_no_upsell_to_a_negative_customer_even_when_they_ask_for_products(content_only):
    assert ids(content_only, scored("these shoes are awful, show me something else", sentiment="negative")) == []
    assert ids(content_only, scored(sentiment="positive"))


def test_out_of_stock_items_are_never_suggested(content_only, catalog):
    sold_out = {item.id for item in catalog.items if item.stock == 0}
    assert sold_out == {"phone-orbit"}
    for category in ("phones", "phone accessories"):
        event = scored(entities=[entity("category", category)])
        found = ids(content_only, event)
        assert found and not sold_out & set(found)


def test_items_the_user_bought_are_excluded(content_only):
    phones = scored(entities=[entity("category", "phones")])
    assert set(ids(content_only, phones)) == {"phone-nova", "phone-lumen"}
    bought = UserHistory(weights={"phone-nova": 15.0}, purchases={"phone-nova": 1_700_000_000.0})
    assert ids(content_only, phones, bought) == ["phone-lumen"]


def test_the_category_entity_restricts_the_candidates(content_only, catalog):
    found = ids(content_only, scored(entities=[entity("category", "shoes")]))
    assert found and {catalog.by_id(i).category for i in found} == {"shoes"}


def test_requested_size_and_colour_must_be_offered(content_only):
    event = scored("a blue top in size L?", entities=[entity("category", "apparel"), entity("color", "blue"), entity("size", "L")])
    # Trail Hoodie (S/M/L, blue/grey) and Basic Tee (S-XL, white/black/blue); not the Rain Jacket (yellow/navy).
    assert set(ids(content_only, event)) == {"hoodie-trail", "tee-basic"}
    event_xl = scored(entities=[entity("category", "apparel"), entity("color", "blue"), entity("size", "XL")])
    assert ids(content_only, event_xl) == ["tee-basic"]


def test_dialogue_slots_apply_when_the_message_names_no_attribute_and_the_message_wins(content_only):
    slotted = scored("any in the same colour?", entities=[entity("category", "apparel")], slots={"color": "navy"})
    assert requested_attributes(slotted) == {"color": {"navy"}}
    assert ids(content_only, slotted) == ["jacket-rain"]
    overridden = scored("blue then", entities=[entity("category", "apparel"), entity("color", "blue")], slots={"color": "navy"})
    assert requested_attributes(overridden) == {"color": {"blue"}}
    assert "jacket-rain" not in ids(content_only, overridden)


def test_storage_is_matched_case_insensitively(content_only):
    event = scored(entities=[entity("category", "phones"), entity("storage", "256gb", "256GB")])
    assert ids(content_only, event) == ["phone-nova"]


def test_product_in_focus_comes_first_then_what_goes_with_it(content_only, catalog):
    event = scored("I'll take the Nova", intent="purchase", product_in_focus="phone-nova")
    found = ids(content_only, event)
    assert found[0] == "phone-nova"
    # Next: accessories that fit it (from the catalog), never another phone.
    assert set(found[1:]) == {"case-nova", "charger-fast"}


def test_a_product_entity_in_the_message_takes_precedence_over_the_dialogue_focus(content_only):
    event = scored("what about the Lumen?", intent="product_inquiry", entities=[entity("product", "Lumen", "phone-lumen")], product_in_focus="phone-nova")
    assert ids(content_only, event)[0] == "phone-lumen"


def test_a_sold_out_product_in_focus_is_replaced_by_others_of_its_category(content_only):
    event = scored("is the Orbit back?", intent="product_inquiry", product_in_focus="phone-orbit")
    found = ids(content_only, event)
    assert "phone-orbit" not in found and set(found) == {"phone-nova", "phone-lumen"}


def test_a_product_in_focus_without_the_requested_colour_is_replaced(content_only):
    event = scored("in green?", intent="inform", entities=[entity("color", "green")], product_in_focus="phone-nova")
    assert ids(content_only, event) == ["phone-lumen"]


def test_a_category_asked_for_next_to_a_product_in_focus_wins(content_only, catalog):
    event = scored("any cases for it?", entities=[entity("category", "phone accessories")], product_in_focus="phone-nova")
    found = ids(content_only, event)
    assert "phone-nova" not in found and {catalog.by_id(i).category for i in found} == {"phone accessories"}
    # What fits the product in focus first.
    assert found[:2] == ["case-nova", "charger-fast"] or found[:2] == ["charger-fast", "case-nova"]
