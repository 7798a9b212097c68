"""`elmo brand check`: the three brand files, each valid on its own and consistent with the others.

Each file's own rules live with its model (catalog.py, knowledge.py, profile.py); this module adds
what needs two files at once: promotion and accessory references, the handoff's hours entry, one
currency, and no banned phrase in any text a reply may quote.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from elmo.brand.catalog import BrandDataError, Catalog, parse_catalog, read_json, surface_key
from elmo.brand.knowledge import KnowledgeBase, parse_knowledge
from elmo.brand.profile import BrandProfile, parse_profile

PARSERS = {"catalog.json": parse_catalog, "knowledge.json": parse_knowledge, "brand.json": parse_profile}


@dataclass
class BrandReport:
    directory: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    catalog: Catalog | None = None
    knowledge: KnowledgeBase | None = None
    profile: BrandProfile | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        """Counts worth a glance: items per category, entries per topic, promotions, stores."""
        lines = [f"brand data in {self.directory}"]
        if self.profile is not None:
            lines.append(f"brand: {self.profile.name} ({self.profile.shop_url}, {self.profile.currency})")
        if self.catalog is not None:
            items = self.catalog.items
            out = sum(not item.in_stock for item in items)
            promoted = sum(item.promotion is not None for item in items)
            lines.append(f"catalog: {len(items)} items, {out} out of stock, {promoted} on promotion")
            out_by_category = Counter(item.category for item in items if not item.in_stock)
            for category, count in sorted(Counter(item.category for item in items).items()):
                lines.append(f"  {category:20} {count:4}  ({out_by_category[category]} out of stock)")
        if self.knowledge is not None:
            lines.append(f"knowledge: {len(self.knowledge.entries)} entries")
            for topic, count in sorted(Counter(entry.topic for entry in self.knowledge.entries).items()):
                lines.append(f"  {topic:20} {count:4}")
            cities = [entry.facts["city"] for entry in self.knowledge.by_topic("stores")]
            if cities:
                lines.append(f"stores: {', '.join(cities)}")
            for entry in self.knowledge.by_topic("promotions"):
                used = len(self.catalog.with_promotion(entry.id)) if self.catalog is not None else 0
                lines.append(f"promotion {entry.id}: until {entry.facts['valid_until']}, {used} item(s)")
        return lines


def check_brand(directory: Path, today: date | None = None) -> BrandReport:
    """Validate the brand files in `directory`; every problem found is in `errors`, none raised."""
    report = BrandReport(directory=directory)
    if not directory.is_dir():
        report.errors.append(f"{directory}: no such directory")
        return report
    parsed = {}
    for name, parse in PARSERS.items():
        path = directory / name
        try:
            parsed[name] = parse(read_json(path), source=str(path))
        except BrandDataError as error:
            report.errors.append(str(error))
    report.catalog = parsed.get("catalog.json")
    report.knowledge = parsed.get("knowledge.json")
    report.profile = parsed.get("brand.json")
    if report.catalog is not None and report.knowledge is not None and report.profile is not None:
        _cross_references(report, report.catalog, report.knowledge, report.profile, today or date.today())
    return report


def _cross_references(
    report: BrandReport, catalog: Catalog, knowledge: KnowledgeBase, profile: BrandProfile, today: date
) -> None:
    errors, warnings = report.errors, report.warnings
    if catalog.currency != profile.currency:
        errors.append(f"catalog.json currency {catalog.currency} differs from brand.json currency {profile.currency}")
    categories = {surface_key(category) for category in catalog.categories}
    for item in catalog.items:
        if item.promotion is not None and knowledge.promotion(item.promotion) is None:
            errors.append(f"catalog.json: {item.id}: promotion {item.promotion!r} is no 'promotions' entry of knowledge.json")
        for other in item.compatible_with:
            if other == item.id or catalog.get(other) is None:
                errors.append(f"catalog.json: {item.id}: compatible_with {other!r} is no other item of the catalog")
        for alias in item.aliases:
            if surface_key(alias) in categories:
                errors.append(f"catalog.json: {item.id}: alias {alias!r} is a category name")
        for attribute, values in item.attributes.model_dump().items():
            if len({v.casefold() for v in values}) != len(values):
                errors.append(f"catalog.json: {item.id}: {attribute} repeat a value")
        for text in (item.name, item.description):
            for phrase in profile.banned_in(text):
                errors.append(f"catalog.json: {item.id}: says the banned phrase {phrase!r}")
    for entry in knowledge.entries:
        for phrase in profile.banned_in(f"{entry.title} {knowledge.render(entry)}"):
            errors.append(f"knowledge.json: {entry.id}: says the banned phrase {phrase!r}")
    for entry in knowledge.by_topic("promotions"):
        terms = knowledge.promotion_terms(entry.id)
        if terms is not None and not terms.is_active(today):
            used = len(catalog.with_promotion(entry.id))
            warnings.append(f"knowledge.json: promotion {entry.id} ended on {terms.valid_until} ({used} item(s) still name it)")
    if knowledge.get(profile.handoff.hours) is None:
        errors.append(f"brand.json: handoff.hours {profile.handoff.hours!r} is no entry of knowledge.json")
    messages = {"greeting": profile.greeting, "sign_off": profile.sign_off, "handoff.message": profile.handoff.message}
    for where, text in messages.items():
        for phrase in profile.banned_in(text):
            errors.append(f"brand.json: {where} says the banned phrase {phrase!r}")
