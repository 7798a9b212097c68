"""The product catalog: what nlu matches entities against and what replies may quote.

Format (`catalog.json`): `{"currency": "EUR", "items": [item, ...]}`; an item has `id`, `name`,
`category`, `price`, `stock`, and optional `attributes` (`sizes`, `colors`, `storage`: lists of
strings), `description`, `tags`, `aliases` (other names customers use) and `promotion`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_BRAND_DIR = Path(__file__).parent / "data"


class Attributes(BaseModel):
    sizes: list[str] = Field(default_factory=list)
    colors: list[str] = Field(default_factory=list)
    storage: list[str] = Field(default_factory=list)


class Item(BaseModel):
    id: str
    name: str
    category: str
    price: float = Field(ge=0)
    stock: int = Field(ge=0)
    attributes: Attributes = Field(default_factory=Attributes)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    promotion: str | None = None


class Catalog(BaseModel):
    currency: str = "EUR"
    items: list[Item]

    @property
    def categories(self) -> list[str]:
        return sorted({item.category for item in self.items})

    def by_id(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)


def brand_dir() -> Path:
    return Path(os.environ.get("ELMO_BRAND_DIR", DEFAULT_BRAND_DIR))


@lru_cache(maxsize=4)
def load_catalog(path: Path | None = None) -> Catalog:
    path = path or brand_dir() / "catalog.json"
    return Catalog.model_validate(json.loads(path.read_text()))
