"""Writes `tests/load/fixtures/conversation_turns.jsonl`: 1,000 text turns in 200 conversations.

Run once (the output is committed): `PYTHONPATH=. .venv/bin/python tests/load/make_conversation_turns.py`.
Conversations follow four shapes (buy a product, ask for suggestions, return an order, find a
store), over the demo catalog, seeded so the file is the same every time. Turns are written round
by round (every conversation's first turn, then every second turn...), so when the file is replayed
at a fixed rate a conversation's turns arrive in order, several seconds apart, as people type.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from elmo.brand.catalog import load_catalog

OUT = Path(__file__).parent / "fixtures" / "conversation_turns.jsonl"
CONVERSATIONS = 200
CHANNELS = ["messenger", "instagram", "whatsapp", "telegram"]
CITIES = ["Berlin", "Hamburg", "Munich", "Vienna", "Cologne", "Paris"]


def conversation(shape: int, rng: random.Random, catalog) -> list[str]:  # noqa: ANN001
    item = rng.choice([i for i in catalog.items if i.category != "travel packages"])
    attributes = item.attributes
    option = rng.choice(attributes.storage or attributes.sizes or attributes.colors or ["the standard one"])
    if shape == 0:
        return [rng.choice(["hi", "hello!", "hey there"]), f"do you have the {item.name}?", f"{option} please",
                rng.choice(["how long does shipping take?", "do you ship to austria?"]), rng.choice(["thanks!", "great, thank you"])]
    if shape == 1:
        category = rng.choice(catalog.categories)
        return [rng.choice(["hey", "good morning"]), f"can you recommend some {category}?", f"what about the {item.name}?",
                "how much is it?", rng.choice(["bye", "ok bye!"])]
    if shape == 2:
        return ["I want to return something I bought", f"order {rng.randint(100000, 999999)}",
                "how long does the refund take?", "ok thanks", "bye"]
    return ["where are your stores?", f"is there one in {rng.choice(CITIES)}?", "what are your opening hours?",
            "any deals at the moment?", "thank you"]


def main() -> None:
    rng = random.Random(7)
    catalog = load_catalog()
    conversations = []
    for number in range(CONVERSATIONS):
        turns = conversation(number % 4, rng, catalog)
        channel = CHANNELS[number % len(CHANNELS)]
        conversations.append((f"load-{number:03d}", f"load-user-{number:03d}", channel, turns))
    lines = ["# 1,000 text turns in 200 conversations for tests/load/bench_conversations.py (made by make_conversation_turns.py)."]
    for round_number in range(5):
        for conversation_id, user_id, channel, turns in conversations:
            lines.append(json.dumps({"event_id": f"{conversation_id}-t{round_number + 1}", "conversation_id": conversation_id,
                                     "user_id": user_id, "channel": channel, "text": turns[round_number]}))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} turns to {OUT}")


if __name__ == "__main__":
    main()
