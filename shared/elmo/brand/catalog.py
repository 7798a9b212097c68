"""The product catalog: what nlu matches entities against and what replies may quote.

Format (`catalog.json`): `{"currency": "EUR", "items": [item, ...]}`; an item has `id` (a slug),
`name`, `category`, `price`, `stock`, and optional `attributes` (`sizes`, `colors`, `storage`:
lists of strings), `description`, `tags`, `aliases` (other names customers use), `promotion` (the
id of a `promotions` entry of the knowledge base), `compatible_with` (ids of the items an
accessory fits) and `collection` (a line of items that go together: "trail", "coast", "ski"...).
Field by field, with the rules `elmo brand check` applies: docs/brand-data.md.

Names and aliases are matched in customers' text (services/nlu/entities.py), so no two items may
share a surface form ("Pixel 9" and "pixel9" are the same one); a name may be a prefix of another
("Pixel 9", "Pixel 9 Pro"): the longest match wins.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

DEFAULT_BRAND_DIR = Path(__file__).parent / "data"
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sizes: list[str] = Field(default_factory=list)
    colors: list[str] = Field(default_factory=list)
    storage: list[str] = Field(default_factory=list)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1)
    category: str = Field(min_length=1)
    price: float = Field(ge=0)
    stock: int = Field(ge=0)
    attributes: Attributes = Field(default_factory=Attributes)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    promotion: str | None = None
    compatible_with: list[str] = Field(default_factory=list)
    collection: str | None = None

    @property
    def in_stock(self) -> bool:
        return self.stock > 0

    def url(self, shop_url: str) -> str:
        """The product page: the brand profile's `shop_url` + "/p/" + id."""
        return f"{shop_url.rstrip('/')}/p/{self.id}"


def surface_key(surface: str) -> str:
    """What nlu treats as the same words: case, spaces and hyphens ignored ("USB-C" == "usb c")."""
    return "".join(re.findall(r"[^\W\d_]+|\d+", surface.lower()))


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    items: list[Item]
    # Built once at validation; the items list is not meant to change afterwards.
    _by_id: dict[str, Item] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids_and_surfaces(self) -> Catalog:
        by_id: dict[str, Item] = {}
        surfaces: dict[str, str] = {}
        problems = []
        for item in self.items:
            if item.id in by_id:
                problems.append(f"duplicate item id {item.id!r}")
            by_id[item.id] = item
            for surface in (item.name, *item.aliases):
                key = surface_key(surface)
                owner = surfaces.setdefault(key, item.id)
                if owner != item.id:
                    problems.append(f"{item.id}: name or alias {surface!r} is also a name or alias of {owner}")
        if problems:
            raise ValueError("; ".join(problems))
        self._by_id = by_id
        return self

    @property
    def categories(self) -> list[str]:
        return sorted({item.category for item in self.items})

    def by_id(self, item_id: str) -> Item:
        """The item with this id; KeyError when there is none."""
        return self._by_id[item_id]

    def get(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def in_category(self, category: str) -> list[Item]:
        return [item for item in self.items if item.category == category]

    def compatible_with(self, item_id: str) -> list[Item]:
        """Accessories that fit this item (a case for a phone)."""
        return [item for item in self.items if item_id in item.compatible_with]

    def in_collection(self, collection: str) -> list[Item]:
        return [item for item in self.items if item.collection == collection]

    def with_promotion(self, promotion_id: str) -> list[Item]:
        return [item for item in self.items if item.promotion == promotion_id]


D = TypeVar("D", bound=BaseModel)


def brand_dir() -> Path:
    return Path(os.environ.get("ELMO_BRAND_DIR", DEFAULT_BRAND_DIR))


class BrandDataError(ValueError):
    """A brand data file that does not follow its format; the message names the file and the entry."""


def describe_error(error: ValueError) -> str:
    """A validation error as one line: 'field: message; field: message'."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    parts = []
    for detail in errors():
        where = ".".join(str(p) for p in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BrandDataError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise BrandDataError(f"{path}: not JSON ({error})") from None


def parse_document(data: object, source: str, model: type[D], rows: str, row_model: type[BaseModel], shape: str) -> D:
    """Validate a brand file's parsed JSON (an object holding a list `rows`) as `model`, naming
    the offending row (by position and id) in the error before any cross-row check runs."""
    if not isinstance(data, dict) or not isinstance(data.get(rows), list):
        raise BrandDataError(f"{source}: expected an object {shape}")
    row_word = rows.rstrip("s") if rows != "entries" else "entry"
    for index, raw in enumerate(data[rows]):
        try:
            row_model.model_validate(raw)
        except ValueError as error:
            name = raw.get("id") if isinstance(raw, dict) else None
            raise BrandDataError(f"{source}: {row_word} {index}{f' ({name})' if name else ''}: {describe_error(error)}") from None
    try:
        return model.model_validate(data)
    except ValueError as error:
        raise BrandDataError(f"{source}: {describe_error(error)}") from None


def parse_catalog(data: object, source: str = "catalog.json") -> Catalog:
    """Validate `data` (the parsed JSON), naming the offending item in the error."""
    return parse_document(data, source, Catalog, "items", Item, '{"currency": ..., "items": [...]}')


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog at `path` (default: `catalog.json` of `brand_dir()`), parsed once per path."""
    return _load_catalog(Path(path) if path else brand_dir() / "catalog.json")


@lru_cache(maxsize=4)
def _load_catalog(path: Path) -> Catalog:
    return parse_catalog(read_json(path), source=str(path))
