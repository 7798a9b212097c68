import json
from collections import Counter

import pytest

from elmo.brand.catalog import DEFAULT_BRAND_DIR, BrandDataError, Catalog, load_catalog, parse_catalog
from services.nlu.entities import extract_entities
from tests.unit.brand.conftest import edit_json

CATEGORIES = {"phones", "phone accessories", "apparel", "shoes", "travel packages", "bags"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_BRAND_DIR / "catalog.json")


def raw_items() -> list[dict]:
    return json.loads((DEFAULT_BRAND_DIR / "catalog.json").read_text())["items"]


def test_the_demo_catalog_is_large_and_covers_every_category(catalog):
    assert len(catalog.items) >= 200
    assert set(catalog.categories) == CATEGORIES
    per_category = Counter(item.category for item in catalog.items)
    assert all(count >= 15 for count in per_category.values()), per_category


def test_some_items_are_out_of_stock_and_some_on_promotion(catalog):
    total = len(catalog.items)
    assert 0.05 <= sum(item.stock == 0 for item in catalog.items) / total <= 0.12
    assert 0.10 <= sum(item.promotion is not None for item in catalog.items) / total <= 0.20


def test_every_item_is_described_and_tagged(catalog):
    for item in catalog.items:
        assert len(item.description) >= 30 and item.description.endswith("."), item.id
        assert 3 <= len(item.tags) <= 6, item.id
        assert item.price > 0, item.id


def test_attributes_follow_the_category(catalog):
    for item in catalog.in_category("phones"):
        assert item.attributes.storage and item.attributes.colors, item.id
    for item in catalog.in_category("shoes"):
        assert item.attributes.sizes and item.attributes.colors, item.id
        assert all(size.isdigit() and 35 <= int(size) <= 47 for size in item.attributes.sizes), item.id
    letter_sizes = {"XS", "S", "M", "L", "XL", "XXL"}
    sized_apparel = [i for i in catalog.in_category("apparel") if set(i.attributes.sizes) <= letter_sizes and i.attributes.sizes]
    assert len(sized_apparel) >= 40


def test_the_original_items_keep_their_ids_names_prices_and_attributes(catalog):
    pixel = catalog.by_id("phone-pixel-9")
    assert (pixel.name, pixel.price, pixel.attributes.storage) == ("Pixel 9", 799.0, ["128GB", "256GB"])
    assert catalog.by_id("phone-galaxy-s24").stock == 0
    assert catalog.by_id("tee-classic").attributes.sizes == ["XS", "S", "M", "L", "XL"]
    assert catalog.by_id("trip-alps-ski").price == 1190.0


def test_lookup_by_id(catalog):
    assert catalog.by_id("case-pixel-9").name == "Pixel 9 Case"
    assert catalog.get("no-such-item") is None
    with pytest.raises(KeyError):
        catalog.by_id("no-such-item")


def test_accessories_point_at_the_phones_they_fit(catalog):
    for item in catalog.items:
        for other in item.compatible_with:
            assert catalog.by_id(other).id != item.id
    # Every phone has at least one case or screen protector a recommender can pair with it.
    for phone in catalog.in_category("phones"):
        assert catalog.compatible_with(phone.id), phone.id
    assert {i.id for i in catalog.compatible_with("phone-pixel-9")} >= {"case-pixel-9", "protector-pixel-9"}


def test_collections_group_items_across_categories(catalog):
    for collection in ("run", "trail", "coast", "ski", "city"):
        items = catalog.in_collection(collection)
        assert len({item.category for item in items}) >= 2, collection


def test_item_url_is_the_shop_url_and_the_id(catalog):
    item = catalog.by_id("tee-classic")
    assert item.url("https://shop.northwind.example/") == "https://shop.northwind.example/p/tee-classic"


def test_every_name_and_alias_resolves_to_its_own_item(catalog):
    for item in catalog.items:
        for surface in (item.name, *item.aliases):
            text = f"do you have the {surface.lower()} in stock?"
            products = [e for e in extract_entities(text, catalog) if e.type == "product"]
            assert [(e.value, e.normalized) for e in products] == [(surface.lower(), item.id)], text


def test_a_duplicate_id_is_rejected_with_its_name():
    items = raw_items()
    with pytest.raises(BrandDataError, match="duplicate item id 'phone-pixel-9'"):
        parse_catalog({"currency": "EUR", "items": [*items, {**items[0], "name": "Pixel Nine Copy", "aliases": []}]})


def test_two_items_with_the_same_surface_form_are_rejected():
    items = raw_items()
    clash = {**items[3], "id": "case-copy", "name": "Some Case", "aliases": ["pixel9"]}
    with pytest.raises(BrandDataError, match=r"case-copy: name or alias 'pixel9' is also a name or alias of phone-pixel-9"):
        parse_catalog({"currency": "EUR", "items": [*items, clash]})


def test_an_invalid_item_is_named_in_the_error():
    items = raw_items()
    items[5] = {**items[5], "price": -1}
    with pytest.raises(BrandDataError, match=rf"item 5 \({items[5]['id']}\): price: Input should be greater than or equal to 0"):
        parse_catalog({"currency": "EUR", "items": items})
    with pytest.raises(BrandDataError, match=r"item 0 \(phone-pixel-9\): colour: Extra inputs are not permitted"):
        parse_catalog({"items": [{**raw_items()[0], "colour": "red"}]})


def test_load_catalog_follows_elmo_brand_dir(brand_copy, monkeypatch):
    edit_json(brand_copy / "catalog.json", lambda data: data["items"].__setitem__(slice(2, None), []))
    monkeypatch.setenv("ELMO_BRAND_DIR", str(brand_copy))
    assert [item.id for item in load_catalog().items] == ["phone-pixel-9", "phone-iphone-16"]
    monkeypatch.delenv("ELMO_BRAND_DIR")
    assert len(load_catalog().items) >= 200
