"""The grounding check: every number, product name and link in a reply must come from a fact.

Template replies pass by construction (placeholders are filled only from facts); the check is what
lets a rephrased reply from a language model through, and what the tests assert on every reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from elmo.contracts.events import GroundingFact

URL_RE = re.compile(r"https?://\S+")
NUMBER_RE = re.compile(r"\d+(?:[.,:]\d+)*")


@dataclass
class GroundingReport:
    ungrounded_numbers: list[str] = field(default_factory=list)
    ungrounded_urls: list[str] = field(default_factory=list)
    unknown_products: list[str] = field(default_factory=list)
    banned_phrases: list[str] = field(default_factory=list)
    dropped_facts: list[str] = field(default_factory=list)  # only checked for rephrasings
    too_long: bool = False

    @property
    def ok(self) -> bool:
        return not (
            self.ungrounded_numbers or self.ungrounded_urls or self.unknown_products or self.banned_phrases
            or self.dropped_facts or self.too_long
        )

    def reasons(self) -> list[str]:
        return [
            *(f"number {n!r} is in no fact" for n in self.ungrounded_numbers),
            *(f"link {u!r} is in no fact" for u in self.ungrounded_urls),
            *(f"product {p!r} is in no fact" for p in self.unknown_products),
            *(f"banned phrase {b!r}" for b in self.banned_phrases),
            *(f"dropped {d!r} from the template" for d in self.dropped_facts),
            *(["much longer than the template"] if self.too_long else []),
        ]


def _canonical_number(text: str) -> str:
    # "799", "799.00" and "799,00" are one number; "2-4" is two.
    value = text.replace(",", ".")
    if re.fullmatch(r"\d+(\.\d+)?", value):
        whole, _, fraction = value.partition(".")
        fraction = fraction.rstrip("0")
        return f"{int(whole)}.{fraction}" if fraction else str(int(whole))
    return value


def check_reply(
    text: str,
    facts: Sequence[GroundingFact],
    product_names: Iterable[str] = (),
    banned_phrases: Iterable[str] = (),
) -> GroundingReport:
    """What in `text` is not backed by `facts` (and which banned phrases it uses)."""
    report = GroundingReport()
    fact_text = "\n".join(f.fact for f in facts)
    fact_urls = set(URL_RE.findall(fact_text))
    for url in URL_RE.findall(text):
        if url.rstrip(".,)") not in fact_urls and url not in fact_urls:
            report.ungrounded_urls.append(url)
    prose = URL_RE.sub(" ", text)
    fact_prose = URL_RE.sub(" ", fact_text)
    known_numbers = {_canonical_number(n) for n in NUMBER_RE.findall(fact_prose)}
    for number in NUMBER_RE.findall(prose):
        if _canonical_number(number) not in known_numbers:
            report.ungrounded_numbers.append(number)
    lowered_facts = fact_prose.lower()
    lowered = prose.lower()
    for name in product_names:
        if _mentions(lowered, name.lower()) and not _mentions(lowered_facts, name.lower()):
            report.unknown_products.append(name)
    report.banned_phrases = [p for p in banned_phrases if _mentions(lowered, p.lower())]
    return report


def _mentions(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


# A rephrasing must stay a reply from the brand: no talk about being a model, nothing longer than
# the template warrants, every fact of the template kept, amounts in the template's currency.
MODEL_TALK = ("as an ai", "an ai", "language model", "customer-service ai", "i'm not able to", "i am not able to")
CURRENCY_AMOUNT_RE = re.compile(r"[€$£¥]\s?\d+(?:[.,]\d+)?|\d+(?:[.,]\d+)?\s?(?:EUR|USD|GBP|euros?|dollars?|pounds?)\b", re.IGNORECASE)


def check_rephrasing(
    candidate: str,
    template: str,
    facts: Sequence[GroundingFact],
    product_names: Iterable[str] = (),
    banned_phrases: Iterable[str] = (),
) -> GroundingReport:
    """`check_reply` plus what a rewrite of `template` must keep: its facts, currency and size."""
    report = check_reply(candidate, facts, product_names, banned_phrases)
    lowered = candidate.lower()
    report.banned_phrases += [p for p in MODEL_TALK if _mentions(lowered, p)]
    template_prose = URL_RE.sub(" ", template)
    for number in NUMBER_RE.findall(template_prose):
        if _canonical_number(number) not in {_canonical_number(n) for n in NUMBER_RE.findall(URL_RE.sub(" ", candidate))}:
            report.dropped_facts.append(number)
    for name in product_names:
        if _mentions(template_prose.lower(), name.lower()) and not _mentions(lowered, name.lower()):
            report.dropped_facts.append(name)
    for url in URL_RE.findall(template):
        if url not in candidate:
            report.dropped_facts.append(url)
    fact_amounts = {re.sub(r"\s", "", a) for a in CURRENCY_AMOUNT_RE.findall("\n".join(f.fact for f in facts))}
    report.ungrounded_numbers += [a for a in CURRENCY_AMOUNT_RE.findall(candidate) if re.sub(r"\s", "", a) not in fact_amounts]
    if len(candidate) > 1.5 * len(template) + 40:
        report.too_long = True
    return report
