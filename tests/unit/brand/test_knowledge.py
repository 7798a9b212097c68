import json
import re
from datetime import date

import pytest

from elmo.brand.catalog import DEFAULT_BRAND_DIR, BrandDataError, load_catalog
from elmo.brand.knowledge import KnowledgeBase, load_knowledge, parse_knowledge, placeholders

TOPICS = {"shipping", "returns", "refunds", "stores", "hours", "promotions", "contact", "payment", "warranty", "order_status"}


@pytest.fixture(scope="module")
def knowledge() -> KnowledgeBase:
    return load_knowledge(DEFAULT_BRAND_DIR / "knowledge.json")


def entry(**overrides) -> dict:
    return {
        "id": "shipping-test", "topic": "shipping", "title": "Test shipping",
        "answer": "Delivery takes {days} working days.", "facts": {"days": "2-4"}, "keywords": ["shipping"],
    } | overrides  # fmt: skip


def test_the_demo_knowledge_base_covers_the_topics(knowledge):
    assert TOPICS <= set(knowledge.topics)
    assert {e.id for e in knowledge.by_topic("shipping")} >= {"shipping-standard", "shipping-express", "shipping-international"}
    assert len(knowledge.by_topic("returns")) >= 4
    cities = {e.facts["city"] for e in knowledge.by_topic("stores")}
    assert cities >= {"Berlin", "Hamburg", "Munich", "Vienna"}


def test_every_number_in_a_rendered_answer_comes_from_its_facts(knowledge):
    for item in knowledge.entries:
        rendered = knowledge.render(item)
        assert "{" not in rendered and "}" not in rendered, item.id
        names, literal = placeholders(item.answer)
        assert not re.search(r"\d", literal), item.id
        digits_in_facts = "".join(item.facts[name] for name in names)
        for number in re.findall(r"\d+", rendered):
            assert number in digits_in_facts, (item.id, number)


def test_render_fills_in_the_facts(knowledge):
    assert knowledge.render("shipping-standard") == (
        "Standard delivery within Germany and Austria takes 2-4 working days and costs €4.95; orders over €50 ship free."
    )
    assert knowledge.render(knowledge.by_id("returns-window")).startswith("You can return items within 30 days")


def test_store_for_city_ignores_case_and_spaces(knowledge):
    assert knowledge.store_for_city("berlin").id == "store-berlin"
    assert knowledge.store_for_city("  VIENNA ").facts["address"].endswith("Wien")
    assert knowledge.store_for_city("Paris") is None


def test_every_catalog_promotion_is_a_promotions_entry(knowledge):
    catalog = load_catalog(DEFAULT_BRAND_DIR / "catalog.json")
    referenced = {item.promotion for item in catalog.items if item.promotion}
    assert referenced
    for promotion_id in referenced:
        assert knowledge.promotion(promotion_id) is not None, promotion_id
    # Every promotion is used by at least one item.
    assert referenced == {e.id for e in knowledge.by_topic("promotions")}


def test_promotion_lookup(knowledge):
    promotion = knowledge.promotion("promo-tee-bundle")
    assert promotion.facts["discount"] == "any two for €30"
    assert knowledge.promotion("shipping-standard") is None  # an entry, but no promotion
    assert knowledge.promotion("promo-nope") is None
    terms = knowledge.promotion_terms("promo-tee-bundle")
    assert terms.valid_until == date(2027, 1, 31)
    assert terms.is_active(date(2027, 1, 31)) and not terms.is_active(date(2027, 2, 1))


def test_find_ranks_entries_by_keywords(knowledge):
    assert knowledge.find("how long does delivery take, is shipping free?")[0].id == "shipping-standard"
    assert knowledge.find("can I talk to a real person", topic="contact")[0].id == "contact-human-agent"
    assert knowledge.find("hello there") == []


def test_a_placeholder_without_a_fact_is_rejected_with_the_entry_named():
    bad = entry(answer="Delivery takes {days} days and costs {cost}.")
    with pytest.raises(BrandDataError, match=r"entry 0 \(shipping-test\): .*answer uses \{cost\} but facts has no such key"):
        parse_knowledge({"entries": [bad]})


def test_a_digit_outside_placeholders_is_rejected():
    bad = entry(answer="Delivery takes {days} working days, 7 on islands.")
    with pytest.raises(BrandDataError, match=r"shipping-test.*number\(s\) 7 outside placeholders; put them in facts"):
        parse_knowledge({"entries": [bad]})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("Costs {cost:.2f}.", "format spec"),
        ("Takes {} days.", "not a plain name"),
        ("Takes {days.min} days.", "not a plain name"),
        ("Takes {days days.", "malformed template"),
    ],
)
def test_templates_must_be_plain_placeholders(answer, message):
    with pytest.raises(BrandDataError, match=message):
        parse_knowledge({"entries": [entry(answer=answer, facts={"cost": "€5", "days": "2"})]})


def test_stores_and_promotions_need_their_facts():
    store = entry(id="store-x", topic="stores", answer="Our store is at {address}.", facts={"address": "Main Street"})
    with pytest.raises(BrandDataError, match="a 'stores' entry needs the facts city, hours"):
        parse_knowledge({"entries": [store]})
    facts = {"name": "Sale", "discount": "10% off", "applies_to": "everything", "valid_until": "end of March"}
    promotion = entry(id="promo-x", topic="promotions", answer="{name}: {discount}.", facts=facts)
    with pytest.raises(BrandDataError, match="valid_until 'end of March' is not an ISO date"):
        parse_knowledge({"entries": [promotion]})


def test_duplicate_ids_and_two_stores_in_one_city_are_rejected():
    with pytest.raises(BrandDataError, match="duplicate knowledge entry id 'shipping-test'"):
        parse_knowledge({"entries": [entry(), entry()]})
    facts = {"city": "Berlin", "address": "Main Street", "hours": "always"}
    stores = [
        entry(id=f"store-{n}", topic="stores", answer="At {address}.", facts=facts | {"city": city})
        for n, city in enumerate(["Berlin", "BERLIN"])
    ]
    with pytest.raises(BrandDataError, match="stores store-0 and store-1 are both in BERLIN"):
        parse_knowledge({"entries": stores})


def test_the_demo_file_has_no_malformed_entry():
    data = json.loads((DEFAULT_BRAND_DIR / "knowledge.json").read_text())
    assert len(parse_knowledge(data).entries) == len(data["entries"]) >= 40
