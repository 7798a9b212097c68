from __future__ import annotations

import pytest

from elmo.contracts.events import (
    DialogueContext,
    Entity,
    Intent,
    Recommendation,
    Recommended,
    Sentiment,
)
from services.generator.policy import Brand
from services.generator.service import load_brand


@pytest.fixture(scope="session")
def brand() -> Brand:
    return load_brand()


def turn(
    intent: str,
    text: str = "...",
    *,
    sentiment: str = "neutral",
    entities: list[Entity] | None = None,
    slots: dict[str, str] | None = None,
    product: str | None = None,
    recommendations: list[Recommendation] | None = None,
    turn_number: int = 1,
) -> Recommended:
    return Recommended(
        conversation_id="c1",
        user_id="u1",
        channel="web",
        text=text,
        source="text",
        intent=Intent(name=intent, confidence=0.9),
        entities=entities or [],
        context=DialogueContext(turn=turn_number, slots=slots or {}, product_in_focus=product),
        sentiment=Sentiment(label=sentiment, score={"negative": -0.7, "neutral": 0.0, "positive": 0.7}[sentiment]),
        recommendations=recommendations or [],
    )


def entity(kind: str, value: str, normalized: str | None = None) -> Entity:
    return Entity(type=kind, value=value, start=0, end=len(value), normalized=normalized)
