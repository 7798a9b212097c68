"""Optional rephrasing of a template reply by SmolLM2-135M-Instruct (off by default): serving and its gate.

The model (and its fine-tuning) is `elmo.models.rephraser`; with rephrasing on, the generator
serves the store's current `generator-rephraser` version (the packaged GGUF if there is none) and
hot-swaps announced versions. Its text reaches a customer only if the grounding check passes (see
core.py); otherwise the template reply is sent. Latency and outcomes are metrics of their own
(`elmo_generator_rephrase_seconds`, `elmo_generator_rephrase_total{outcome}`), kept across swaps.

The promotion gate of the kind is judged here, with the generator's own templates and check:
`held_out_cases` composes a fixed set of turns' template replies with the real brand data.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from elmo.contracts.events import DialogueContext, Intent, Recommended, Sentiment
from elmo.dialogue import BotState
from elmo.models.rephraser import MODEL_NAME, HeldOutCase, RephraserJudge, RephraserModel, RephrasingPair
from services.generator.grounding import check_rephrasing
from services.generator.policy import Brand, compose_reply

__all__ = ["HELD_OUT_TURNS", "MODEL_NAME", "RephraseMetrics", "Rephraser", "held_out_cases", "judge", "refused_beyond"]

REPHRASE_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30)

# The gate's held-out turns: (intent, customer text, product in focus). Templates only, no links
# or handoffs (those are never rephrased); products and knowledge answers none of the training
# fixtures use.
HELD_OUT_TURNS = (
    ("greeting", "hi!", None),
    ("thanks", "thanks a lot", None),
    ("price_inquiry", "how much is the pixel 9?", "phone-pixel-9"),
    ("purchase", "I'll take the pixel 9", "phone-pixel-9"),
    ("shipping_info", "how long does delivery take?", None),
    ("goodbye", "bye", None),
)


class RephraseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "elmo_generator_rephrase_seconds", "Time the language model takes to rephrase one reply.",
            buckets=REPHRASE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.outcomes = Counter(
            "elmo_generator_rephrase", "Rephrasings by outcome: accepted, or rejected by the grounding check.",
            ["outcome"], registry=registry,
        )  # fmt: skip


class Rephraser:
    """One version of the language model as the generator serves it: timed, outcomes counted."""

    def __init__(self, model: RephraserModel | None = None, max_new_tokens: int = 80, metrics: RephraseMetrics | None = None) -> None:
        self.model = model or RephraserModel.packaged()
        self.max_new_tokens = max_new_tokens
        self.metrics = metrics

    @property
    def version(self) -> str:
        return self.model.version

    def rephrase(self, reply: str) -> str:
        started = time.perf_counter()
        # Decoding stops once the text is longer than the grounding check lets through: same outcome, less waiting.
        text = self.model.rephrase(reply, self.max_new_tokens, refused_beyond(reply))
        if self.metrics is not None:
            self.metrics.seconds.observe(time.perf_counter() - started)
        return text

    def accepted(self) -> None:
        if self.metrics is not None:
            self.metrics.outcomes.labels("accepted").inc()

    def rejected(self) -> None:
        if self.metrics is not None:
            self.metrics.outcomes.labels("rejected").inc()


def held_out_cases(brand: Brand) -> list[HeldOutCase]:
    cases = []
    for number, (intent, text, product) in enumerate(HELD_OUT_TURNS):
        event = Recommended(
            event_id=f"rephraser-held-out-{number}",  # fixes the wording: the same templates every time
            conversation_id="rephraser-held-out", user_id="rephraser-held-out", channel="web", text=text, source="text",
            intent=Intent(name=intent, confidence=0.9), context=DialogueContext(turn=1, product_in_focus=product),
            sentiment=Sentiment(label="neutral", score=0.0),
        )  # fmt: skip
        composed, _ = compose_reply(event, BotState(), brand)
        if composed.recommendations or composed.handoff:
            raise ValueError(f"held-out turn {intent!r} composes a reply the generator never rephrases")
        cases.append(HeldOutCase(composed.text, composed.grounding))
    return cases


def judge(
    base: RephraserModel, brand: Brand, held_out_pairs: list[RephrasingPair] | tuple[RephrasingPair, ...] = (), max_new_tokens: int = 48
) -> RephraserJudge:
    """The promotion gate's judge: the share of held-out rephrasings `check_rephrasing` accepts."""
    product_names = [item.name for item in brand.catalog.items]

    def accept(candidate: str, case: HeldOutCase) -> bool:
        return check_rephrasing(candidate, case.template, case.context, product_names, brand.profile.banned_phrases).ok

    return RephraserJudge(base, held_out_cases(brand), accept, held_out_pairs, max_new_tokens, refused_beyond)


def refused_beyond(template: str) -> int:
    """The length past which `check_rephrasing` refuses a rewrite of `template` as much longer."""
    return int(1.5 * len(template) + 40)
