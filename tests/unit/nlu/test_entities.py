import json
from datetime import date
from pathlib import Path

import pytest

from elmo.brand.catalog import load_catalog
from services.nlu.entities import extract_entities

CASES_FILE = Path(__file__).resolve().parents[3] / "services" / "nlu" / "training_data" / "entities.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()]
# Relative dates in the cases are written against this day (a Wednesday).
TODAY = date(2025, 3, 5)
ENTITY_TYPES = {"product", "category", "size", "color", "storage", "quantity", "order_id", "money", "city", "date"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def extract(text, catalog, **kwargs):
    return extract_entities(text, catalog, today=kwargs.pop("today", TODAY), **kwargs)


def assert_well_formed(text, entities):
    for entity in entities:
        assert text[entity.start : entity.end] == entity.value
    for left, right in zip(entities, entities[1:]):
        assert left.end <= right.start, f"{left} overlaps {right}"


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:40] for c in CASES])
def test_case(case, catalog):
    today = date.fromisoformat(case["today"]) if "today" in case else TODAY
    entities = extract(case["text"], catalog, today=today, awaiting_slot=case.get("awaiting_slot"))
    assert_well_formed(case["text"], entities)
    got = [(e.type, e.value, e.normalized) for e in entities]
    assert got == [(e["type"], e["value"], e["normalized"]) for e in case["entities"]]


def test_the_cases_cover_every_entity_type_and_some_texts_without_entities():
    covered = {e["type"] for case in CASES for e in case["entities"]}
    assert covered == ENTITY_TYPES
    assert len(CASES) >= 80
    assert sum(not case["entities"] for case in CASES) >= 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GB", [("storage", "16GB", "16GB")]),
        ("size L, blue", [("size", "L", "L"), ("color", "blue", "blue")]),
        ("order 123456", [("order_id", "123456", "123456")]),
        ("black pls", [("color", "black", "black")]),
        ("the 256 one", [("storage", "256", "256GB")]),
    ],
)
def test_inform_fragments(text, expected, catalog):
    assert [(e.type, e.value, e.normalized) for e in extract(text, catalog)] == expected


def test_offsets_point_at_the_surface_text(catalog):
    text = "Hey!! 😍 2 Zip Hoodies (navy, XL) to Paris by next Monday, max €120"
    entities = extract(text, catalog)
    assert_well_formed(text, entities)
    by_type = {e.type: e for e in entities}
    assert (by_type["product"].start, by_type["product"].end) == (10, 21)
    assert by_type["product"].normalized == "hoodie-zip"
    assert by_type["quantity"].normalized == "2"
    assert by_type["size"].normalized == "XL"
    assert by_type["city"].normalized == "Paris"
    assert by_type["date"].normalized == "2025-03-10"
    assert by_type["money"].normalized == "120 EUR"


def test_longest_match_wins_and_product_beats_category(catalog):
    # "pixel 9 case" (product) covers "pixel 9" (product) and "case" (category).
    [entity] = extract("pixel 9 case", catalog)
    assert (entity.type, entity.normalized) == ("product", "case-pixel-9")
    # "hoodie" is both a catalog alias and an apparel synonym: the product wins.
    [entity] = extract("hoodie", catalog)
    assert (entity.type, entity.normalized) == ("product", "hoodie-zip")
    # "iphone 15" is not the iPhone 16: only the category is certain.
    [entity] = extract("iphone 15", catalog)
    assert (entity.type, entity.normalized) == ("category", "phones")


def test_entities_never_overlap_on_busy_texts(catalog):
    texts = [
        "3 pixel 9 cases 2 chargers and the iphone16 256gb in pink x2 size M 42 eu by tomorrow under 50 eur",
        "order #1234567 ORD-55555 12/03 March 12 12 march 1,200 dollars $20 €5 lisbon weekend lisbon trip Lisbon",
        "size 9.5 sz 42 w32 xl XXL large medium small extra large 128 gigs 1tb the 256 one",
    ]
    for text in texts:
        entities = extract(text, catalog)
        assert_well_formed(text, entities)
        assert len(entities) >= 8


@pytest.mark.parametrize(
    ("awaiting_slot", "text", "expected"),
    [
        ("size", "42", ("size", "42")),
        ("size", "L pls", ("size", "L")),
        ("quantity", "2", ("quantity", "2")),
        ("quantity", "a couple", ("quantity", "2")),
        ("storage", "512 please", ("storage", "512GB")),
        ("order_id", "4521", ("order_id", "4521")),
    ],
)
def test_a_bare_answer_fills_the_awaited_slot(awaiting_slot, text, expected, catalog):
    [entity] = extract(text, catalog, awaiting_slot=awaiting_slot)
    assert (entity.type, entity.normalized) == expected


@pytest.mark.parametrize("text", ["42", "2", "256", "4521"])
def test_a_bare_number_without_a_question_is_nothing(text, catalog):
    assert extract(text, catalog) == []


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("next friday", date(2025, 3, 5), "2025-03-14"),  # Wednesday: friday of next week
        ("next monday", date(2025, 3, 8), "2025-03-10"),  # Saturday: the day after tomorrow
        ("this monday", date(2025, 3, 5), "2025-03-10"),
        ("last friday", date(2025, 3, 5), "2025-02-28"),
        ("on friday", date(2025, 3, 5), "friday"),  # past or future: left as a weekday
        ("03/01", date(2024, 12, 28), "2025-01-03"),  # no year: the nearest occurrence
        ("29/02", date(2025, 3, 5), "2024-02-29"),
        ("31/02", date(2025, 3, 5), None),
        ("today", date(2025, 12, 31), "2025-12-31"),
        ("tmrw", date(2025, 12, 31), "2026-01-01"),
    ],
)
def test_dates_resolve_against_today(text, today, expected, catalog):
    entities = extract(text, catalog, today=today)
    assert [e.normalized for e in entities] == ([expected] if expected else [])


def test_default_today_is_the_current_date(catalog):
    [entity] = extract_entities("today", catalog)
    assert entity.normalized == date.today().isoformat()


def test_patterns_follow_the_catalog(catalog):
    other = catalog.model_copy(deep=True)
    other.items[0].aliases.append("pixie phone")
    [entity] = extract_entities("the pixie phone", other)
    assert (entity.type, entity.normalized) == ("product", "phone-pixel-9")
    assert all(e.type != "product" for e in extract("the pixie phone", catalog))
