"""The catalog as arrays: one row per item, so filters are vector operations, not loops.

Built once at start; a request over 10,000 items then costs a few boolean masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import numpy as np

from elmo.brand.catalog import Catalog, Item

# Requested attribute (entity type and dialogue slot) -> the catalog's attribute list.
ATTRIBUTE_FIELDS = {"color": "colors", "size": "sizes", "storage": "storage"}


def normal(value: str) -> str:
    return value.strip().lower()


class ItemIndex:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.items: list[Item] = list(catalog.items)
        self.ids = [item.id for item in self.items]
        self.row = {item_id: row for row, item_id in enumerate(self.ids)}
        n = len(self.items)
        self.categories = sorted({item.category for item in self.items})
        self._category_code = {category: code for code, category in enumerate(self.categories)}
        self.category_codes = np.array([self._category_code[item.category] for item in self.items], dtype=np.int32)
        self.in_stock = np.array([item.stock > 0 for item in self.items], dtype=bool)
        self.on_promotion = np.array([item.promotion is not None for item in self.items], dtype=bool)
        self.prices = np.array([item.price for item in self.items], dtype=np.float64)
        # attribute -> value -> items offering it; attribute -> items that have the attribute at all.
        self._offers: dict[str, dict[str, np.ndarray]] = {}
        self._has: dict[str, np.ndarray] = {}
        for attribute, field_name in ATTRIBUTE_FIELDS.items():
            offers: dict[str, np.ndarray] = {}
            has = np.zeros(n, dtype=bool)
            for row, item in enumerate(self.items):
                values = getattr(item.attributes, field_name)
                has[row] = bool(values)
                for value in values:
                    offers.setdefault(normal(value), np.zeros(n, dtype=bool))[row] = True
            self._offers[attribute], self._has[attribute] = offers, has
        # Catalog structure: what an accessory fits (both ways), and lines of items that go together.
        self._fits: dict[int, set[int]] = {}
        for row, item in enumerate(self.items):
            for target in item.compatible_with:
                if (other := self.row.get(target)) is not None:
                    self._fits.setdefault(row, set()).add(other)
                    self._fits.setdefault(other, set()).add(row)
        collections = sorted({item.collection for item in self.items if item.collection})
        self._collection_code = {collection: code for code, collection in enumerate(collections)}
        self.collection_codes = np.array([self._collection_code.get(item.collection or "", -1) for item in self.items], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.items)

    def category_mask(self, category: str) -> np.ndarray:
        code = self._category_code.get(category)
        return self.category_codes == code if code is not None else np.zeros(len(self), dtype=bool)

    def offers(self, attribute: str, values: Set[str]) -> np.ndarray:
        """Items offering any of `values` for `attribute`."""
        mask = np.zeros(len(self), dtype=bool)
        for value in values:
            found = self._offers.get(attribute, {}).get(normal(value))
            if found is not None:
                mask |= found
        return mask

    def has(self, attribute: str) -> np.ndarray:
        return self._has[attribute]

    def attribute_mask(self, requested: Mapping[str, Set[str]], strict: bool) -> np.ndarray:
        """Items matching every requested attribute. Strict: the item must offer it. Lenient (for
        accessories next to a product in focus): only where the item has that attribute at all, so
        a charger stays eligible when the customer asked for a size-L shirt."""
        mask = np.ones(len(self), dtype=bool)
        for attribute, values in requested.items():
            offered = self.offers(attribute, values)
            mask &= offered if strict else (offered | ~self.has(attribute))
        return mask

    def matched_values(self, row: int, requested: Mapping[str, Set[str]]) -> list[tuple[str, str]]:
        """The requested (attribute, value) pairs this item offers, in the order of the request."""
        item = self.items[row]
        found = []
        for attribute, values in requested.items():
            offered = {normal(v): v for v in getattr(item.attributes, ATTRIBUTE_FIELDS[attribute])}
            for value in sorted(values):
                if normal(value) in offered:
                    found.append((attribute, offered[normal(value)]))
                    break
        return found

    def complement_mask(self, row: int) -> np.ndarray:
        """Items that go with this one: accessories it takes (or what an accessory fits), and items
        of its collection in other categories."""
        mask = np.zeros(len(self), dtype=bool)
        mask[list(self._fits.get(row, ()))] = True
        if self.collection_codes[row] >= 0:
            mask |= (self.collection_codes == self.collection_codes[row]) & (self.category_codes != self.category_codes[row])
        return mask

    def complement_reason(self, anchor: int, row: int) -> str | None:
        if self.ids[anchor] in self.items[row].compatible_with:
            return f"fits the {self.items[anchor].name}"
        if self.ids[row] in self.items[anchor].compatible_with:
            return f"the {self.items[anchor].name} fits it"
        collection = self.items[anchor].collection
        if collection and collection == self.items[row].collection:
            return f"from the same {collection} collection as the {self.items[anchor].name}"
        return None
