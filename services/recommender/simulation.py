"""Simulated shoppers with hidden tastes: interactions with structure a recommender can learn.

Used by `elmo train recommender --from simulated` (before real feedback exists) and by the
benchmark. Every user has, unseen by the model:
- preferred categories (a Dirichlet draw: most users care about one or two),
- a few preferred tags and, sometimes, a preferred collection (a line of items that go together),
- a price level: where in each category's price range they like to buy.
A user's sessions each browse one category, mostly within one of their tags; views turn into
clicks and purchases more often the better an item fits their taste. After buying an item with
catalog complements (a case for the phone just bought, a jacket of the same collection as the
shoes), they often go on to buy one of those. Item appeal also has a per-item quality term, so
popularity is a real, but weaker, signal. Seeded: the same catalog and seed give the same log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from elmo.brand.catalog import Attributes, Catalog, Item
from elmo.interactions import WEIGHTS, InteractionKind
from services.recommender.als_model import InteractionLog
from services.recommender.item_index import ItemIndex

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class SimulationParams:
    users: int = 5000
    seed: int = 13
    sessions_mean: float = 4.0
    days: float = 60.0
    # How strongly taste drives choice (0: everyone follows item quality alone).
    tag_affinity: float = 1.2
    collection_affinity: float = 1.5
    price_tolerance: float = 0.2
    # Chance a session browses one of the user's tags rather than the whole category.
    tag_focus: float = 0.75
    # Chance of buying a complement after a purchase that has some.
    complement_rate: float = 0.6


class _Pools:
    """Items by category and by (category, tag), with what a user's appeal needs."""

    def __init__(self, catalog: Catalog, rng: np.random.Generator) -> None:
        self.index = ItemIndex(catalog)
        items = catalog.items
        self.tags = sorted({tag for item in items for tag in item.tags})
        tag_code = {tag: code for code, tag in enumerate(self.tags)}
        n = len(items)
        self.item_tags = [np.array([tag_code[t] for t in item.tags], dtype=np.int32) for item in items]
        self.tag_matrix = np.zeros((n, max(len(self.tags), 1)), dtype=np.float32)
        for row, codes in enumerate(self.item_tags):
            self.tag_matrix[row, codes] = 1.0
        # Per-item quality (what makes an item popular for everyone), heavy-tailed.
        self.quality = rng.lognormal(0.0, 0.8, size=n).astype(np.float32)
        self.categories = self.index.categories
        self.by_category = [np.flatnonzero(self.index.category_codes == c) for c in range(len(self.categories))]
        # Price quantile of each item within its category: "cheap" and "premium" per category.
        self.price_quantile = np.zeros(n, dtype=np.float32)
        for rows in self.by_category:
            order = np.argsort(self.index.prices[rows], kind="stable")
            self.price_quantile[rows[order]] = (np.arange(rows.size) + 0.5) / max(rows.size, 1)
        self.by_category_tag: dict[tuple[int, int], np.ndarray] = {}
        for row, codes in enumerate(self.item_tags):
            for code in codes:
                self.by_category_tag.setdefault((int(self.index.category_codes[row]), int(code)), []).append(row)  # type: ignore[arg-type]
        self.by_category_tag = {key: np.array(rows, dtype=np.int32) for key, rows in self.by_category_tag.items()}
        self.category_tags = [
            np.array(sorted({code for (c, code) in self.by_category_tag if c == category}), dtype=np.int32)
            for category in range(len(self.categories))
        ]
        self._complements: dict[int, np.ndarray] = {}

    def complements(self, row: int) -> np.ndarray:
        if row not in self._complements:
            self._complements[row] = np.flatnonzero(self.index.complement_mask(row))
        return self._complements[row]


@dataclass
class _Taste:
    categories: np.ndarray  # probabilities per category
    tags: np.ndarray  # tag codes
    tag_vector: np.ndarray
    collection: int  # collection code or -1
    price_level: float


def _taste(pools: _Pools, rng: np.random.Generator) -> _Taste:
    categories = rng.dirichlet(np.full(len(pools.categories), 0.3))
    main = int(np.argmax(categories))
    available = pools.category_tags[main] if pools.category_tags[main].size else np.arange(len(pools.tags))
    count = min(3, available.size)
    tags = rng.choice(available, size=count, replace=False) if count else np.zeros(0, dtype=np.int32)
    # A second category's tag too, so tastes cross categories (a runner buys running shoes and tops).
    second = int(np.argsort(categories)[-2]) if len(categories) > 1 else main
    if pools.category_tags[second].size:
        tags = np.unique(np.r_[tags, rng.choice(pools.category_tags[second])])
    vector = np.zeros(pools.tag_matrix.shape[1], dtype=np.float32)
    vector[tags] = 1.0
    collections = int(pools.index.collection_codes.max()) + 1
    collection = int(rng.integers(collections)) if collections > 0 and rng.random() < 0.5 else -1
    return _Taste(categories, tags.astype(np.int32), vector, collection, float(rng.random()))


def _appeal(pools: _Pools, taste: _Taste, rows: np.ndarray, params: SimulationParams) -> np.ndarray:
    shared = pools.tag_matrix[rows] @ taste.tag_vector
    price_fit = np.exp(-0.5 * ((pools.price_quantile[rows] - taste.price_level) / params.price_tolerance) ** 2)
    appeal = pools.quality[rows] * np.exp(params.tag_affinity * shared) * (0.1 + price_fit)
    if taste.collection >= 0:
        appeal *= np.where(pools.index.collection_codes[rows] == taste.collection, np.exp(params.collection_affinity), 1.0)
    return appeal


class _Recorder:
    def __init__(self) -> None:
        self.users: list[int] = []
        self.items: list[int] = []
        self.kinds: list[InteractionKind] = []
        self.times: list[float] = []

    def add(self, user: int, item: int, kind: InteractionKind, at: float) -> None:
        self.users.append(user)
        self.items.append(item)
        self.kinds.append(kind)
        self.times.append(at)


def simulate(catalog: Catalog, params: SimulationParams = SimulationParams()) -> InteractionLog:
    rng = np.random.default_rng(params.seed)
    pools = _Pools(catalog, rng)
    record = _Recorder()
    for user in range(params.users):
        taste = _taste(pools, rng)
        sessions = 1 + rng.poisson(params.sessions_mean - 1)
        for start in np.sort(rng.uniform(START, START + params.days * 86400, size=sessions)):
            _session(pools, taste, user, float(start), params, rng, record)
    weights = np.array([WEIGHTS[k] for k in record.kinds], dtype=np.float32)
    purchases = np.array([k is InteractionKind.PURCHASE for k in record.kinds], dtype=bool)
    return InteractionLog(
        [f"sim-{user:06d}" for user in range(params.users)],
        list(pools.index.ids),
        np.array(record.users, dtype=np.int32),
        np.array(record.items, dtype=np.int32),
        weights,
        np.array(record.times, dtype=np.float64),
        purchases,
    )


def _session(
    pools: _Pools, taste: _Taste, user: int, at: float, params: SimulationParams, rng: np.random.Generator, record: _Recorder
) -> None:
    category = int(rng.choice(len(pools.categories), p=taste.categories))
    pool = pools.by_category[category]
    if rng.random() < params.tag_focus:
        own = [t for t in taste.tags if (category, int(t)) in pools.by_category_tag]
        if own:
            pool = pools.by_category_tag[(category, int(rng.choice(own)))]
    if pool.size == 0:
        return
    appeal = _appeal(pools, taste, pool, params)
    views = min(pool.size, 1 + rng.poisson(2.0))
    # Sampling without replacement in proportion to appeal (Gumbel top-k).
    keys = np.log(appeal) + rng.gumbel(size=pool.size)
    positions = np.argpartition(-keys, views - 1)[:views] if views < pool.size else np.arange(pool.size)
    best = appeal.max()
    for position in positions:
        item, fit = pool[position], float(appeal[position] / best)
        record.add(user, int(item), InteractionKind.VIEW, at)
        at += 20.0
        if rng.random() < 0.1 + 0.6 * fit:
            record.add(user, int(item), InteractionKind.CLICK, at)
            at += 30.0
            if rng.random() < 0.5 * fit:
                record.add(user, int(item), InteractionKind.PURCHASE, at)
                at += 60.0
                _buy_complement(pools, taste, user, int(item), at, params, rng, record)
                return  # one purchase ends a session


def _buy_complement(
    pools: _Pools, taste: _Taste, user: int, item: int, at: float, params: SimulationParams, rng: np.random.Generator, record: _Recorder
) -> None:
    complements = pools.complements(item)
    if complements.size == 0 or rng.random() >= params.complement_rate:
        return
    appeal = _appeal(pools, taste, complements, params)
    chosen = int(complements[rng.choice(complements.size, p=appeal / appeal.sum())])
    at += rng.uniform(600, 3 * 86400)
    record.add(user, chosen, InteractionKind.VIEW, at)
    record.add(user, chosen, InteractionKind.CLICK, at + 20)
    if rng.random() < 0.7:
        record.add(user, chosen, InteractionKind.PURCHASE, at + 60)


# --- a large synthetic catalog (for the benchmark and tests at scale) ----------------------------

_CATEGORY_SHARES = {"phones": 0.06, "phone accessories": 0.24, "apparel": 0.36, "shoes": 0.20, "travel packages": 0.14}
_PRICE = {"phones": (6.6, 0.35), "phone accessories": (3.3, 0.5), "apparel": (3.7, 0.5), "shoes": (4.4, 0.4), "travel packages": (6.5, 0.5)}
_COLLECTION_CATEGORIES = ("apparel", "shoes", "travel packages")


def synthetic_catalog(n_items: int, seed: int = 7, tags_per_category: int = 20, collections: int = 60) -> Catalog:
    """`n_items` items over the five categories: tags per category, collections across apparel,
    shoes and travel, accessories that fit some phones; prices log-normal; 90 % in stock."""
    rng = np.random.default_rng(seed)
    counts = {c: max(1, round(n_items * share)) for c, share in _CATEGORY_SHARES.items()}
    counts["apparel"] += n_items - sum(counts.values())
    items: list[Item] = []
    phone_ids: list[str] = []
    for category, count in counts.items():
        slug = category.replace(" ", "-")
        tag_popularity = 1.0 / np.arange(1, tags_per_category + 1) ** 0.7
        tag_popularity /= tag_popularity.sum()
        for number in range(count):
            item_id = f"{slug}-{number:05d}"
            tags = [f"{slug}-t{t:02d}" for t in sorted(rng.choice(tags_per_category, size=2, replace=False, p=tag_popularity))]
            collection = None
            if category in _COLLECTION_CATEGORIES and rng.random() < 0.5:
                collection = f"line-{int(rng.integers(collections)):02d}"
            compatible: list[str] = []
            if category == "phone accessories" and phone_ids and rng.random() < 0.7:
                compatible = sorted(set(rng.choice(phone_ids, size=int(rng.integers(1, 4)))))
            attributes = Attributes(
                colors=sorted(set(rng.choice(["black", "white", "blue", "red", "green", "grey"], size=3))) if category != "travel packages" else [],
                sizes=["S", "M", "L", "XL"] if category == "apparel" else ([str(s) for s in range(38, 47)] if category == "shoes" else []),
                storage=["128GB", "256GB", "512GB"][: int(rng.integers(1, 4))] if category == "phones" else [],
            )
            mean, sigma = _PRICE[category]
            items.append(
                Item(
                    id=item_id,
                    name=f"{category.title()} {number:05d}",
                    category=category,
                    price=round(float(rng.lognormal(mean, sigma)), 2),
                    stock=0 if rng.random() < 0.1 else int(rng.integers(1, 100)),
                    attributes=attributes,
                    description=f"{category} item {number}",
                    tags=tags,
                    compatible_with=compatible,
                    collection=collection,
                )
            )
            if category == "phones":
                phone_ids.append(item_id)
    return Catalog(items=items)
