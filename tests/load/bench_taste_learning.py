"""Benchmark: does the recommender learn each shopper's taste across sessions? In process, no Kafka.

The shoppers of `elmo simulate` (shared/elmo/tools/simulate.py: hidden favourite categories, liked
tags and a price band; the same `shoppers`, `Shopper.react` and per-turn dice) ask the recommender
core directly, and what the chain would record goes through the real `InteractionStore` on the
local Redis, under a key prefix of this run per arm (deleted afterwards):
- every turn: the message as nlu would understand it (intent `recommendation_request`, the
  category entity; its MiniLM embedding as the query), the user's history and the popularity
  read from the store, `Recommender.recommend`;
- the views of what was shown are recorded in both arms (the delivery reports them); clicks and
  purchases only with learning on (the shop front-end's feedback).
Per session index: recommendations shown, the share the shopper likes, CTR and purchases per shown.
Two references over the same shoppers: random items of the asked category, and an oracle that
shows liked items first (its liked share falls too: a shopper likes 7 items of a category on
median, and a bought item is not wanted again).

The ALS model is the one `elmo train recommender` fits (simulated shoppers, 5,000 users, seed 13),
or `--model-version` from the model store (`current` for the store's current one).

Run (Redis up):
    PYTHONPATH=. .venv/bin/python tests/load/bench_taste_learning.py [--users 200] [--sessions 8] [--turns 2] [--seed 7]
Results are printed and written as JSON to `.local/bench/taste_learning.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from elmo.brand.catalog import Catalog, load_catalog
from elmo.contracts.events import DialogueContext, Entity, Intent, Sentiment, SentimentScored
from elmo.interactions import Interaction, InteractionKind, InteractionStore, UserHistory
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.simulate import FIRST_TURNS, LATER_TURNS, Shopper, Window, shoppers, turn_rng
from services.recommender.als_model import AlsModel, AlsParams
from services.recommender.content import item_embeddings
from services.recommender.core import RecommendationRequest, Recommender
from services.recommender.item_index import ItemIndex
from services.recommender.settings import RecommenderSettings
from services.recommender.simulation import SimulationParams, simulate

# Who picks the items of a turn: (shopper, request) -> item ids.
Picker = Callable[[Shopper, RecommendationRequest], list[str]]


def understood(user_id: str, conversation_id: str, text: str, category: str, turn: int) -> SentimentScored:
    """The message as nlu and sentiment hand it on: a recommendation request naming a category."""
    return SentimentScored(
        conversation_id=conversation_id,
        user_id=user_id,
        channel="web",
        text=text,
        source="text",
        intent=Intent(name="recommendation_request", confidence=0.9),
        entities=[Entity(type="category", value=category, start=0, end=len(category), normalized=category)],
        context=DialogueContext(turn=turn + 1),
        sentiment=Sentiment(label="neutral", score=0.0),
    )


async def run_arm(
    pick: Picker, catalog: Catalog, store: InteractionStore, queries: dict[str, np.ndarray], recommender: Recommender,
    learning: bool, users: int, sessions: int, turns: int, seed: int,
) -> list[Window]:  # fmt: skip
    people = shoppers(catalog, users, seed)
    windows = [Window() for _ in range(sessions)]
    now = datetime.now(UTC)
    for session in range(sessions):
        for person in people:
            user_id = f"u{person.index}"
            category = person.session_category(turn_rng(seed, person.index, session, -1))
            for turn in range(turns):
                rng = turn_rng(seed, person.index, session, turn)
                text = rng.choice(FIRST_TURNS if turn == 0 else LATER_TURNS).format(category=category)
                history = (await store.histories([user_id]))[user_id]
                popularity = recommender.popularity_vector(await store.popularity(now))
                event = understood(user_id, f"{user_id}-s{session}", text, category, turn)
                request = RecommendationRequest(event, history, popularity, queries[text])
                shown = [{"item_id": item_id, "tracking_id": ""} for item_id in pick(person, request)]
                reactions = person.react(shown, rng)
                window = windows[session]
                window.turns += 1
                window.shown += len(reactions)
                window.liked += sum(r.liked for r in reactions)
                window.clicks += sum(r.clicked for r in reactions)
                window.purchases += sum(r.purchased for r in reactions)
                now += timedelta(seconds=30)
                recorded = []
                for n, reaction in enumerate(reactions):
                    event_id = f"{event.event_id}/{n}"
                    recorded.append(Interaction(user_id, reaction.item_id, InteractionKind.VIEW, now, f"{event_id}/view"))
                    if learning and reaction.clicked:
                        recorded.append(Interaction(user_id, reaction.item_id, InteractionKind.CLICK, now, f"{event_id}/click"))
                    if learning and reaction.purchased:
                        recorded.append(Interaction(user_id, reaction.item_id, InteractionKind.PURCHASE, now, f"{event_id}/purchase"))
                await store.record_many(recorded)
    return windows


def recommender_pick(recommender: Recommender) -> Picker:
    return lambda person, request: [r.item_id for r in recommender.recommend(request)]


def random_pick(catalog: Catalog, top_k: int) -> Picker:
    def pick(person: Shopper, request: RecommendationRequest) -> list[str]:
        category = request.event.entities[0].normalized
        items = [i.id for i in catalog.in_category(category) if i.in_stock and i.id not in request.history.purchases]
        return random.Random(f"{request.event.conversation_id}/{request.event.text}").sample(items, min(top_k, len(items)))

    return pick


def oracle_pick(catalog: Catalog, top_k: int) -> Picker:
    def pick(person: Shopper, request: RecommendationRequest) -> list[str]:
        category = request.event.entities[0].normalized
        items = [i for i in catalog.in_category(category) if i.in_stock and i.id not in request.history.purchases]
        items.sort(key=lambda i: (not (person.likes(i) and i.id not in person.bought), i.id))
        return [i.id for i in items[:top_k]]

    return pick


async def measure(args: argparse.Namespace) -> dict:
    catalog = load_catalog()
    settings = RecommenderSettings()
    embedder = SentenceEmbedder(threads=1)
    vectors = item_embeddings(catalog, embedder, settings.model_store)
    texts = sorted({t.format(category=c) for t in (*FIRST_TURNS, *LATER_TURNS) for c in catalog.categories})
    queries = dict(zip(texts, embedder.encode(texts), strict=True))
    if args.model_version:
        store = ArtifactStore(settings.model_store)
        model = AlsModel.load(store, None if args.model_version == "current" else args.model_version)
    else:
        model = AlsModel.fit(simulate(catalog, SimulationParams(users=5000, seed=13)), AlsParams(seed=13))
    recommender = Recommender(ItemIndex(catalog), vectors, model, top_k=args.top_k)
    results: dict = {"config": vars(args) | {"output": str(args.output)}, "model": model.version, "arms": {}}
    pickers = {
        "off": (recommender_pick(recommender), False),
        "on": (recommender_pick(recommender), True),
        "random-in-category": (random_pick(catalog, args.top_k), True),
        "oracle": (oracle_pick(catalog, args.top_k), True),
    }
    run = uuid.uuid4().hex[:8]
    for arm, (pick, learning) in pickers.items():
        store = InteractionStore.from_url(args.redis_url, prefix=f"bench-taste:{run}:{arm}:interactions")
        started = time.perf_counter()
        try:
            windows = await run_arm(pick, catalog, store, queries, recommender, learning, args.users, args.sessions, args.turns, args.seed)
        finally:
            keys = [key async for key in store._client.scan_iter(match=f"{store.prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await store._client.delete(*keys[start : start + 1000])
            await store.close()
        total = Window()
        for window in windows:
            total.add(window)
        results["arms"][arm] = {
            "seconds": round(time.perf_counter() - started, 1),
            "sessions": [{"session": s, **asdict(w), **{k: round(v, 4) for k, v in w.rates().items()}} for s, w in enumerate(windows)],
            "all": {k: round(v, 4) for k, v in total.rates().items()},
        }
        print(f"{arm}: {results['arms'][arm]['all']} ({results['arms'][arm]['seconds']} s)", flush=True)
    return results


def table(results: dict) -> list[str]:
    arms = results["arms"]
    lines = [f"{'session':>7} " + " ".join(f"{arm[:6] + ' ' + m:>13}" for arm in arms for m in ("liked", "ctr"))]
    for s in range(len(next(iter(arms.values()))["sessions"])):
        cells = [f"{arms[arm]['sessions'][s][m]:>13.3f}" for arm in arms for m in ("liked_share", "ctr")]
        lines.append(f"{s:>7} " + " ".join(cells))
    lines.append(f"{'all':>7} " + " ".join(f"{arms[arm]['all'][m]:>13.3f}" for arm in arms for m in ("liked_share", "ctr")))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--model-version", default=None, help="An ALS version of the model store (or 'current') instead of a fresh fit.")
    parser.add_argument("--redis-url", default=ConnectionSettings().redis_url)
    parser.add_argument("--output", type=Path, default=Path(".local/bench/taste_learning.json"))
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        results = asyncio.run(measure(args))
    for line in table(results):
        print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
