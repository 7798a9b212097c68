from __future__ import annotations

import itertools

import pytest

from elmo.contracts.events import Recommendation
from elmo.dialogue import BotState
from services.generator.grounding import check_reply
from services.generator.policy import compose_reply
from tests.unit.generator.conftest import entity, turn

PIXEL = "phone-pixel-9"


def recs(*item_ids: str, brand) -> list[Recommendation]:  # noqa: ANN001
    items = [brand.catalog.by_id(i) for i in item_ids]
    return [
        Recommendation(item_id=i.id, name=i.name, score=1.0 - n / 10, reason="popular this week", tracking_id=f"t{n}",
                       price=i.price, url=f"http://127.0.0.1:8108/r/token{n}")
        for n, i in enumerate(items)
    ]


def test_greeting_names_the_brand(brand):
    reply, bot = compose_reply(turn("greeting", "hi"), BotState(), brand)
    assert reply.strategy == "greet"
    assert brand.profile.name in reply.text or reply.variant.endswith(":1")
    assert bot.strategy == "greet" and bot.turn == 1


def test_buying_a_phone_asks_for_each_missing_option_then_confirms_with_the_catalog_price(brand):
    pixel = brand.catalog.by_id(PIXEL)
    reply, bot = compose_reply(turn("purchase", "I'll take the Pixel 9", product=PIXEL), BotState(), brand)
    assert reply.strategy == "ask_slot" and reply.awaiting_slot == "storage"
    assert all(option in reply.text for option in pixel.attributes.storage)
    assert bot.awaiting_slot == "storage" and bot.pending_item_id == PIXEL

    reply, bot = compose_reply(turn("inform", "256GB", product=PIXEL, slots={"storage": "256GB"}, turn_number=2), bot, brand)
    assert reply.strategy == "ask_slot" and reply.awaiting_slot == "color"

    reply, bot = compose_reply(
        turn("inform", "black", product=PIXEL, slots={"storage": "256GB", "color": "black"}, turn_number=3), bot, brand
    )
    assert reply.strategy == "confirm_order" and reply.awaiting_slot is None
    assert brand.price(pixel.price) in reply.text and "256GB" in reply.text and "black" in reply.text

    reply, bot = compose_reply(
        turn("affirm", "yes", product=PIXEL, slots={"storage": "256GB", "color": "black"}, turn_number=4), bot, brand
    )
    assert reply.strategy == "order_link"
    assert brand.item_url(pixel) in reply.text


def test_an_option_the_product_does_not_have_is_asked_again_with_the_real_options(brand):
    reply, _ = compose_reply(turn("inform", "1TB", product=PIXEL, slots={"storage": "1TB"}), BotState(strategy="ask_slot"), brand)
    assert reply.strategy == "invalid_option" and reply.awaiting_slot == "storage"
    assert "1TB" in reply.text and "128GB" in reply.text


def test_negative_sentiment_is_apologised_for_first_and_a_negative_complaint_goes_to_a_human(brand):
    reply, _ = compose_reply(turn("complaint", "this is a disgrace", sentiment="negative"), BotState(), brand)
    apologies = brand.templates.variants("apology")
    assert any(reply.text.startswith(a) for a in apologies)
    assert reply.handoff and reply.strategy == "handoff"
    assert not reply.recommendations


def test_a_human_handoff_request_is_marked_for_handoff(brand):
    reply, _ = compose_reply(turn("human_handoff", "can i talk to a person"), BotState(), brand)
    assert reply.handoff and brand.profile.handoff.message in reply.text


def test_a_return_asks_for_the_order_number_and_continues_when_it_arrives(brand):
    reply, bot = compose_reply(turn("return_refund", "i want to return my jacket"), BotState(), brand)
    assert reply.strategy == "ask_order_id" and reply.awaiting_slot == "order_id"
    assert bot.pending_intent == "return_refund"
    reply, bot = compose_reply(
        turn("inform", "order 482913", entities=[entity("order_id", "482913")], slots={"order_id": "482913"}, turn_number=2),
        bot,
        brand,
    )
    assert reply.strategy == "return_started" and "482913" in reply.text
    assert any(f.source == "knowledge_base" for f in reply.grounding)


def test_recommendations_are_listed_with_their_links_up_to_the_brand_maximum(brand):
    items = ["phone-pixel-9", "phone-iphone-16", "case-pixel-9", "charger-usb-c-30w"]
    reply, bot = compose_reply(turn("recommendation_request", "suggest a phone", recommendations=recs(*items, brand=brand)), BotState(), brand)
    limit = brand.profile.promotion_rules.max_recommendations
    assert reply.strategy == "present_recommendations"
    assert len(reply.recommendations) == min(limit, len(items))
    for rec in reply.recommendations:
        assert rec.name in reply.text and rec.url in reply.text
    assert bot.offered_item_ids == [r.item_id for r in reply.recommendations]


def test_no_upsell_to_a_negative_customer(brand):
    reply, _ = compose_reply(
        turn("recommendation_request", "ugh fine show me phones", sentiment="negative",
             recommendations=recs("phone-pixel-9", brand=brand)),
        BotState(),
        brand,
    )
    assert not reply.recommendations and "•" not in reply.text


def test_an_out_of_stock_product_is_said_so_and_alternatives_offered(brand):
    sold_out = next(i for i in brand.catalog.items if i.stock == 0)
    alternatives = [i.id for i in brand.catalog.items if i.stock > 0 and i.category == sold_out.category][:2]
    reply, _ = compose_reply(
        turn("purchase", f"I want the {sold_out.name}", product=sold_out.id, recommendations=recs(*alternatives, brand=brand)),
        BotState(),
        brand,
    )
    assert reply.strategy == "out_of_stock" and sold_out.name in reply.text
    assert [r.item_id for r in reply.recommendations] == alternatives


def test_store_questions_are_answered_from_the_knowledge_base(brand):
    store = brand.knowledge.by_topic("stores")[0]
    city = store.facts["city"]
    reply, _ = compose_reply(turn("store_info", f"where is your store in {city}", entities=[entity("city", city)]), BotState(), brand)
    assert reply.strategy == "knowledge_answer" and brand.knowledge.render(store) in reply.text
    reply, _ = compose_reply(turn("store_info", "store in Atlantis?", entities=[entity("city", "Atlantis")]), BotState(), brand)
    assert reply.strategy == "store_not_found" and "Atlantis" in reply.text


def test_the_same_turn_gets_the_same_variant(brand):
    event = turn("thanks", "thx")
    first, _ = compose_reply(event, BotState(), brand)
    again, _ = compose_reply(event, BotState(), brand)
    assert first.text == again.text and first.variant == again.variant


INTENTS = [
    "greeting", "goodbye", "thanks", "product_inquiry", "price_inquiry", "purchase", "recommendation_request",
    "promotion_inquiry", "order_status", "return_refund", "complaint", "shipping_info", "store_info",
    "human_handoff", "inform", "affirm", "deny", "out_of_scope",
]


@pytest.mark.parametrize(("intent", "sentiment"), list(itertools.product(INTENTS, ["negative", "neutral", "positive"])))
def test_every_reply_is_grounded(intent, sentiment, brand):
    promoted = next(i for i in brand.catalog.items if i.promotion and i.stock > 0)
    contexts = [
        {},
        {"product": PIXEL, "slots": {"storage": "256GB"}},
        {"product": promoted.id, "entities": [entity("order_id", "123456")], "slots": {"order_id": "123456"}},
    ]
    for context in contexts:
        for bot in (BotState(), BotState(strategy="confirm_order", pending_item_id=PIXEL, pending_intent="purchase")):
            event = turn(intent, "some words 42", sentiment=sentiment, recommendations=recs("case-pixel-9", brand=brand), **context)
            reply, _ = compose_reply(event, bot, brand)
            report = check_reply(reply.text, reply.grounding, [i.name for i in brand.catalog.items], brand.profile.banned_phrases)
            assert report.ok, (intent, sentiment, context, reply.text, report.reasons())
