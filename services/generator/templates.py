"""Reply phrasing: the brand's variants per strategy (`replies.json` in the brand directory)."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from pydantic import BaseModel, field_validator

from elmo.brand.catalog import brand_dir

DIGIT_OUTSIDE_PLACEHOLDERS = re.compile(r"\d")


class ReplyTemplates(BaseModel):
    strategies: dict[str, list[str]]

    @field_validator("strategies")
    @classmethod
    def _variants_hold_no_facts(cls, strategies: dict[str, list[str]]) -> dict[str, list[str]]:
        for strategy, variants in strategies.items():
            if not variants:
                raise ValueError(f"strategy {strategy!r} has no variants")
            for variant in variants:
                literal = "".join(text for text, *_ in string.Formatter().parse(variant))
                if DIGIT_OUTSIDE_PLACEHOLDERS.search(literal):
                    raise ValueError(f"variant of {strategy!r} holds a number of its own (numbers come from facts): {variant!r}")
        return strategies

    def variants(self, strategy: str) -> list[str]:
        try:
            return self.strategies[strategy]
        except KeyError:
            raise KeyError(f"replies.json has no strategy {strategy!r}") from None


def load_templates(path: Path | None = None) -> ReplyTemplates:
    path = path or brand_dir() / "replies.json"
    return ReplyTemplates.model_validate(json.loads(path.read_text()))
