"""The knowledge base: the brand's answers about shipping, returns, stores, promotions and the rest.

Format (`knowledge.json`): `{"entries": [entry, ...]}`; an entry has `id` (a slug, unique), `topic`,
`title`, `answer` (a sentence template), `facts` (the values it quotes) and `keywords` (words and
phrases customers use when they mean this entry).

The grounding rule, enforced here: every `{placeholder}` in `answer` is a key of `facts`, and
`answer` has no digit outside its placeholders. So every number a reply quotes (a price, a
delay, an address, a date) comes from `facts`, where it is stated once and can be checked.
Some topics need particular facts: see `REQUIRED_FACTS`. Field by field: docs/brand-data.md.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from string import Formatter

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from elmo.brand.catalog import SLUG, brand_dir, parse_document, read_json

# Facts an entry of these topics must have, because code reads them (store_for_city, Promotion).
REQUIRED_FACTS: dict[str, frozenset[str]] = {
    "stores": frozenset({"city", "address", "hours"}),
    "promotions": frozenset({"name", "discount", "valid_until", "applies_to"}),
}


def placeholders(template: str) -> tuple[list[str], str]:
    """The `{names}` of a template and its literal text (what is left once they are taken out).

    ValueError for what `str.format_map` would not fill from a dict of strings: unbalanced
    braces, positional `{}`, attribute or index access, conversions and format specs.
    """
    names, literal = [], []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"malformed template ({error})") from None
    for text, name, spec, conversion in parsed:
        literal.append(text)
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a plain name")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} has a conversion or format spec; put the formatted value in facts")
        names.append(name)
    return names, "".join(literal)


class KnowledgeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG)
    topic: str = Field(min_length=1)
    title: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    facts: dict[str, str] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _grounded(self) -> KnowledgeEntry:
        names, literal = placeholders(self.answer)
        missing = sorted(set(names) - set(self.facts))
        if missing:
            raise ValueError(f"answer uses {', '.join('{' + m + '}' for m in missing)} but facts has no such key")
        if digits := re.findall(r"\d+", literal):
            raise ValueError(f"answer has the number(s) {', '.join(digits)} outside placeholders; put them in facts")
        required = REQUIRED_FACTS.get(self.topic, frozenset())
        if missing_facts := sorted(required - set(self.facts)):
            raise ValueError(f"a {self.topic!r} entry needs the facts {', '.join(missing_facts)}")
        if self.topic == "promotions":
            try:
                date.fromisoformat(self.facts["valid_until"])
            except ValueError:
                raise ValueError(f"valid_until {self.facts['valid_until']!r} is not an ISO date (YYYY-MM-DD)") from None
        return self

    def render(self) -> str:
        return self.answer.format_map(self.facts)


class Promotion(BaseModel):
    """A `promotions` entry read as a promotion."""

    id: str
    name: str
    discount: str
    valid_until: date
    applies_to: str

    def is_active(self, today: date | None = None) -> bool:
        return (today or date.today()) <= self.valid_until


class KnowledgeBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[KnowledgeEntry]
    _by_id: dict[str, KnowledgeEntry] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids(self) -> KnowledgeBase:
        by_id: dict[str, KnowledgeEntry] = {}
        for entry in self.entries:
            if entry.id in by_id:
                raise ValueError(f"duplicate knowledge entry id {entry.id!r}")
            by_id[entry.id] = entry
        cities: dict[str, str] = {}
        for entry in self.entries:
            if entry.topic == "stores":
                other = cities.setdefault(entry.facts["city"].casefold(), entry.id)
                if other != entry.id:
                    raise ValueError(f"stores {other} and {entry.id} are both in {entry.facts['city']}")
        self._by_id = by_id
        return self

    @property
    def topics(self) -> list[str]:
        return sorted({entry.topic for entry in self.entries})

    def by_topic(self, topic: str) -> list[KnowledgeEntry]:
        """The entries of a topic, in file order."""
        return [entry for entry in self.entries if entry.topic == topic]

    def by_id(self, entry_id: str) -> KnowledgeEntry:
        """The entry with this id; KeyError when there is none."""
        return self._by_id[entry_id]

    def get(self, entry_id: str) -> KnowledgeEntry | None:
        return self._by_id.get(entry_id)

    def render(self, entry: KnowledgeEntry | str) -> str:
        """The answer with its facts filled in (an entry or an entry id)."""
        return (self.by_id(entry) if isinstance(entry, str) else entry).render()

    def store_for_city(self, city: str) -> KnowledgeEntry | None:
        """The store in `city` (case-insensitive), or None when the brand has none there."""
        wanted = city.strip().casefold()
        for entry in self.by_topic("stores"):
            if entry.facts["city"].casefold() == wanted:
                return entry
        return None

    def promotion(self, promotion_id: str) -> KnowledgeEntry | None:
        """The `promotions` entry with this id (what catalog items' `promotion` names), or None."""
        entry = self._by_id.get(promotion_id)
        return entry if entry is not None and entry.topic == "promotions" else None

    def promotion_terms(self, promotion_id: str) -> Promotion | None:
        """The promotion's facts as typed values (for checks such as `is_active`)."""
        entry = self.promotion(promotion_id)
        if entry is None:
            return None
        facts = entry.facts
        return Promotion(
            id=entry.id, name=facts["name"], discount=facts["discount"], valid_until=facts["valid_until"],
            applies_to=facts["applies_to"],
        )  # fmt: skip

    def find(self, text: str, topic: str | None = None, limit: int = 3) -> list[KnowledgeEntry]:
        """Entries whose keywords occur in `text` (as whole words), most keywords first."""
        lowered = text.casefold()
        scored = []
        for position, entry in enumerate(self.entries):
            if topic is not None and entry.topic != topic:
                continue
            hits = sum(1 for k in entry.keywords if re.search(r"(?<!\w)" + re.escape(k.casefold()) + r"(?!\w)", lowered))
            if hits:
                scored.append((-hits, position, entry))
        return [entry for _, _, entry in sorted(scored, key=lambda s: s[:2])[:limit]]


def parse_knowledge(data: object, source: str = "knowledge.json") -> KnowledgeBase:
    """Validate `data` (the parsed JSON), naming the offending entry in the error."""
    return parse_document(data, source, KnowledgeBase, "entries", KnowledgeEntry, '{"entries": [...]}')


def load_knowledge(path: Path | None = None) -> KnowledgeBase:
    """The knowledge base at `path` (default: `knowledge.json` of `brand_dir()`), parsed once per path."""
    return _load_knowledge(Path(path) if path else brand_dir() / "knowledge.json")


@lru_cache(maxsize=4)
def _load_knowledge(path: Path) -> KnowledgeBase:
    return parse_knowledge(read_json(path), source=str(path))
