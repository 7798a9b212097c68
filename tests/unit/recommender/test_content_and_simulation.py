"""Item texts and their cached vectors; the simulated shoppers the model is trained on."""

import numpy as np

from elmo.brand.catalog import Catalog
from services.recommender.content import CACHE_DIR, cache_key, item_embeddings, item_text
from services.recommender.simulation import SimulationParams, simulate, synthetic_catalog


def test_item_text_carries_name_category_description_tags_and_attributes(catalog):
    text = item_text(catalog.by_id("hoodie-trail"))
    for part in ("Trail Hoodie", "apparel", "fleece hoodie", "outdoor", "Sizes: S, M, L", "Colors: blue, grey"):
        assert part in text


def test_item_vectors_are_cached_by_catalog_content_and_embedder_version(catalog, embedder, vectors, tmp_path):
    first = item_embeddings(catalog, embedder, tmp_path)
    cached = tmp_path / CACHE_DIR / f"{cache_key(catalog, embedder.version)}.npy"
    assert cached.exists() and np.allclose(first, vectors, atol=1e-6)
    np.save(cached, first * 0 + 0.5)  # the cache is what a restart reads: prove it is read
    assert np.all(item_embeddings(catalog, embedder, tmp_path) == 0.5)
    changed = Catalog(items=[catalog.items[0].model_copy(update={"description": "now waterproof"}), *catalog.items[1:]])
    assert cache_key(changed, embedder.version) != cache_key(catalog, embedder.version)
    assert cache_key(catalog, "another-model") != cache_key(catalog, embedder.version)
    assert np.allclose(np.linalg.norm(item_embeddings(changed, embedder, tmp_path), axis=1), 1.0, atol=1e-5)
    assert len(list((tmp_path / CACHE_DIR).glob("*.npy"))) == 2


def test_the_simulation_is_seeded(catalog):
    one, two = simulate(catalog, SimulationParams(users=300, seed=1)), simulate(catalog, SimulationParams(users=300, seed=1))
    assert np.array_equal(one.items, two.items) and np.array_equal(one.times, two.times) and np.array_equal(one.weights, two.weights)
    other = simulate(catalog, SimulationParams(users=300, seed=2))
    assert len(other) != len(one) or not np.array_equal(other.items, one.items)


def test_simulated_shoppers_buy_what_fits_what_they_bought(catalog):
    log = simulate(catalog, SimulationParams(users=3000, seed=4))
    bought = {}
    for user, item, purchase in zip(log.users, log.items, log.purchases, strict=True):
        if purchase:
            bought.setdefault(int(user), set()).add(log.item_ids[item])
    phone_buyers = [items for items in bought.values() if "phone-nova" in items]
    others = [items for items in bought.values() if "phone-nova" not in items]
    share = lambda group: sum("case-nova" in items for items in group) / len(group)  # noqa: E731
    assert len(phone_buyers) > 100
    assert share(phone_buyers) > 3 * share(others)


def test_a_synthetic_catalog_has_the_structure_the_simulator_uses():
    catalog = synthetic_catalog(1000, seed=3)
    assert len(catalog.items) == 1000
    assert set(catalog.categories) == {"phones", "phone accessories", "apparel", "shoes", "travel packages"}
    accessories = catalog.in_category("phone accessories")
    assert sum(bool(item.compatible_with) for item in accessories) > len(accessories) / 2
    assert {item.collection for item in catalog.items if item.collection} and any(item.stock == 0 for item in catalog.items)
