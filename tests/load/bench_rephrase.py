"""Benchmark: optional rephrasing of template replies by SmolLM2-135M, behind the grounding check.

Composes the template reply of a set of turns with the real brand data (the generator's policy),
asks the language model to rephrase each, and reports per reply: latency, whether the grounding
check accepted it (every number, link and product name from a fact, no banned phrase) and why not.

Needs the `rephrase` extra: `.venv/bin/pip install -e '.[rephrase]'`. Run:
    PYTHONPATH=. .venv/bin/python tests/load/bench_rephrase.py
"""

from __future__ import annotations

import json
import statistics
import time

from elmo.contracts.events import DialogueContext, Intent, Recommended, Sentiment
from elmo.dialogue import BotState
from services.generator.grounding import check_rephrasing
from services.generator.policy import compose_reply
from services.generator.rephrase import Rephraser
from services.generator.service import load_brand

TURNS = [
    ("greeting", "hi!", {}),
    ("thanks", "thanks a lot", {}),
    ("shipping_info", "how long does delivery take?", {}),
    ("price_inquiry", "how much is the pixel 9?", {"product_in_focus": "phone-pixel-9"}),
    ("purchase", "I'll take the pixel 9", {"product_in_focus": "phone-pixel-9"}),
    ("product_inquiry", "is the classic tee any good?", {"product_in_focus": "tee-classic"}),
    ("out_of_scope", "what's the weather like?", {}),
    ("goodbye", "bye", {}),
]


def main() -> None:
    brand = load_brand()
    started = time.perf_counter()
    rephraser = Rephraser()
    load_s = time.perf_counter() - started
    product_names = [item.name for item in brand.catalog.items]
    results = []
    for intent, text, context in TURNS:
        event = Recommended(
            conversation_id="bench", user_id="bench", channel="web", text=text, source="text",
            intent=Intent(name=intent, confidence=0.9), context=DialogueContext(turn=1, **context),
            sentiment=Sentiment(label="neutral", score=0.0),
        )  # fmt: skip
        composed, _ = compose_reply(event, BotState(), brand)
        started = time.perf_counter()
        candidate = rephraser.rephrase(composed.text)
        seconds = time.perf_counter() - started
        report = check_rephrasing(candidate, composed.text, composed.grounding, product_names, brand.profile.banned_phrases)
        results.append({"intent": intent, "template": composed.text, "rephrased": candidate, "seconds": round(seconds, 2),
                        "accepted": bool(candidate) and report.ok, "reasons": report.reasons()})  # fmt: skip
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    latencies = [r["seconds"] for r in results]
    print(json.dumps({"model_load_s": round(load_s, 1), "replies": len(results), "accepted": sum(r["accepted"] for r in results),
                      "latency_p50_s": round(statistics.median(latencies), 2), "latency_max_s": max(latencies)}))  # fmt: skip


if __name__ == "__main__":
    main()
