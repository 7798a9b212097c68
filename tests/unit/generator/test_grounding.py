from __future__ import annotations

import pytest

from elmo.contracts.events import GroundingFact
from services.generator.grounding import check_rephrasing, check_reply
from services.generator.templates import ReplyTemplates

FACTS = [
    GroundingFact(source="catalog", reference="phone-pixel-9", fact="Pixel 9"),
    GroundingFact(source="catalog", reference="phone-pixel-9", fact="€799"),
    GroundingFact(source="knowledge_base", reference="shipping", fact="Standard delivery takes 2-4 working days."),
    GroundingFact(source="recommendation", reference="t1", fact="https://shop.example/r/abc123"),
]


def test_a_reply_that_quotes_only_facts_passes():
    text = "The Pixel 9 is €799.00 and delivery takes 2-4 working days: https://shop.example/r/abc123"
    assert check_reply(text, FACTS, ["Pixel 9", "iPhone 16"]).ok


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("The Pixel 9 is €699.", "number '699'"),
        ("Delivery takes 1 day.", "number '1'"),
        ("Order here: https://evil.example/pay", "link"),
        ("The iPhone 16 is great.", "product 'iPhone 16'"),
        ("We guarantee it.", "banned phrase 'guarantee'"),
    ],
)
def test_an_invented_number_link_product_or_banned_phrase_is_caught(text, problem):
    report = check_reply(text, FACTS, ["Pixel 9", "iPhone 16"], ["guarantee"])
    assert not report.ok
    assert any(problem in reason for reason in report.reasons())


def test_a_template_variant_with_a_number_of_its_own_is_refused():
    with pytest.raises(ValueError, match="number of its own"):
        ReplyTemplates(strategies={"greet": ["Hi! Get 10% off today."]})


TEMPLATE = "The Pixel 9 is €799. Standard delivery takes 2-4 working days."


def test_a_faithful_rephrasing_passes():
    good = "Good news: the Pixel 9 costs €799, and standard delivery takes 2-4 working days."
    assert check_rephrasing(good, TEMPLATE, FACTS, ["Pixel 9", "iPhone 16"]).ok


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        # What SmolLM2 actually wrote in tests/load/bench_rephrase.py, all of which check_reply let through:
        ("Wir können wie eine Kosten mit 2-4 Jahre erhalten.", "dropped '799'"),
        ("The Pixel 9 is available at the local market for €799, delivery 2-4 days. You can order it online for £799.", "£799"),
        ("I'm sorry, as a customer-service AI I cannot sell the Pixel 9 for €799 in 2-4 days.", "customer-service ai"),
        ("The Pixel 9 is €799 and ships in 2-4 working days. " + "We are always happy to help you. " * 6, "much longer"),
    ],
)
def test_a_rephrasing_that_drops_a_fact_changes_currency_talks_like_a_model_or_rambles_is_refused(candidate, problem):
    report = check_rephrasing(candidate, TEMPLATE, FACTS, ["Pixel 9", "iPhone 16"])
    assert not report.ok
    assert any(problem in reason for reason in report.reasons()), report.reasons()
