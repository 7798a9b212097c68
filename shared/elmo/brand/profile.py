"""The brand profile: name, shop, voice, what a reply must never say, and when to stop selling.

Format (`brand.json`): `name`, `shop_url`, `currency`, `tone`, `greeting`, `sign_off`,
`banned_phrases`, `promotion_rules` (`never_when_sentiment`, `never_for_intents`,
`max_recommendations`) and `handoff` (`message`, `hours`: the id of the knowledge entry that states
when people answer). The texts a reply quotes verbatim (greeting, sign-off, handoff message) carry
no digits: numbers belong to the knowledge base's facts. Field by field: docs/brand-data.md.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from elmo.brand.catalog import SLUG, BrandDataError, brand_dir, describe_error, read_json


def _no_digits(text: str) -> str:
    if re.search(r"\d", text):
        raise ValueError(f"{text!r} has digits; numbers belong to the knowledge base's facts")
    return text


class PromotionRules(BaseModel):
    """When a reply may suggest products at all, and how many."""

    model_config = ConfigDict(extra="forbid")

    never_when_sentiment: list[Literal["negative", "neutral", "positive"]] = Field(default_factory=lambda: ["negative"])
    never_for_intents: list[str] = Field(default_factory=list)
    max_recommendations: int = Field(default=3, ge=0, le=10)


class Handoff(BaseModel):
    """What the customer is told when a person takes over."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1)
    hours: str = Field(pattern=SLUG, description="Id of the knowledge entry that states the agents' hours.")

    _message = field_validator("message")(_no_digits)


class BrandProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    shop_url: str = Field(pattern=r"^https?://[^\s/]+(?:/[^\s]*)?$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    tone: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    sign_off: str = Field(min_length=1)
    banned_phrases: list[str] = Field(default_factory=list)
    promotion_rules: PromotionRules = Field(default_factory=PromotionRules)
    handoff: Handoff

    _texts = field_validator("greeting", "sign_off")(_no_digits)

    @field_validator("shop_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("banned_phrases")
    @classmethod
    def _distinct_phrases(cls, phrases: list[str]) -> list[str]:
        cleaned = [p.strip() for p in phrases]
        if any(not p for p in cleaned):
            raise ValueError("a banned phrase is empty")
        lowered = [p.casefold() for p in cleaned]
        if len(set(lowered)) != len(lowered):
            raise ValueError("banned phrases repeat")
        return cleaned

    def banned_in(self, text: str) -> list[str]:
        """The banned phrases `text` contains, as whole words, ignoring case ("cheap" not in "cheaper")."""
        return [
            phrase for phrase in self.banned_phrases
            if re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, re.IGNORECASE)
        ]  # fmt: skip

    def item_url(self, item_id: str) -> str:
        return f"{self.shop_url}/p/{item_id}"


def parse_profile(data: object, source: str = "brand.json") -> BrandProfile:
    try:
        return BrandProfile.model_validate(data)
    except ValueError as error:
        raise BrandDataError(f"{source}: {describe_error(error)}") from None


def load_profile(path: Path | None = None) -> BrandProfile:
    """The profile at `path` (default: `brand.json` of `brand_dir()`), parsed once per path."""
    return _load_profile(Path(path) if path else brand_dir() / "brand.json")


@lru_cache(maxsize=4)
def _load_profile(path: Path) -> BrandProfile:
    return parse_profile(read_json(path), source=str(path))
