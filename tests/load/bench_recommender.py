"""Benchmark: the recommender core on a 10,000-item, 100,000-user model.

Data: `synthetic_catalog(10_000)` (five categories, 20 tags per category, 60 collections,
accessories that fit some phones, 10 % sold out) and `simulate(...)` over it for 100,000 users with
hidden tastes (services/recommender/simulation.py): structured interactions, not uniform noise.

1. Quality: each user with at least two distinct purchases has their last purchase held out (every
   interaction with that item removed from training); ALS is fitted on the rest; hit-rate@10 of
   ALS (the user's fitted factors, training items excluded) against popularity (most training
   weight, training items excluded) over all held-out users.
2. Latency of `Recommender.recommend` for warm users (held-out users with their training history
   as it would come from Redis): the user's factors recomputed from their history (one k x k solve),
   the blend over all 10,000 items, filters, reasons, signed tracking links. Excluded: the text
   embedding (nlu computes it; the request carries a fixed unit vector) and the Redis read, which
   is measured on its own on the real Redis (3.). The item vectors are random unit vectors by
   default (the cost of the product is the same; `--real-embeddings` encodes the 10,000 item texts
   with MiniLM first, ~20 s of CPU). Requests cycle through four shapes: no filter, a category, a
   category with colour and size, a product in focus.
   Also: the warm-user solve alone, numpy against implicit's `recalculate_user`.
3. The Redis read the service does per batch for one user (HGETALL of the weights + ZRANGE of the
   purchases, one pipelined round trip) on the real Redis, for users with their training history
   written under a key prefix of this run (deleted afterwards).

Run (Redis up: `.venv/bin/elmo redis up`):
    PYTHONPATH=. .venv/bin/python tests/load/bench_recommender.py [--items 10000] [--users 100000]
Results are printed and written as JSON to `.local/bench/recommender.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from elmo.contracts.events import DialogueContext, Entity, Intent, Sentiment, SentimentScored
from elmo.interactions import Interaction, InteractionKind, InteractionStore, UserHistory
from elmo.runtime.settings import ConnectionSettings
from services.recommender.als_model import AlsModel, AlsParams, HeldOut, confidence, hold_out_last_purchase, popularity_hit_rate
from services.recommender.core import RecommendationRequest, Recommender
from services.recommender.item_index import ItemIndex
from services.recommender.simulation import SimulationParams, simulate, synthetic_catalog


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(seconds) * 1000, q)), 3)


def histories_of(held: HeldOut, users: np.ndarray) -> dict[int, UserHistory]:
    train = held.train
    wanted = set(int(u) for u in users)
    weights: dict[int, dict[str, float]] = {u: {} for u in wanted}
    purchases: dict[int, dict[str, float]] = {u: {} for u in wanted}
    for user, item, weight, at, bought in zip(train.users, train.items, train.weights, train.times, train.purchases, strict=True):
        if int(user) in wanted:
            item_id = train.item_ids[item]
            weights[int(user)][item_id] = weights[int(user)].get(item_id, 0.0) + float(weight)
            if bought:
                purchases[int(user)][item_id] = max(float(at), purchases[int(user)].get(item_id, 0.0))
    return {u: UserHistory(weights[u], purchases[u]) for u in wanted}


def requests_for(recommender: Recommender, users: np.ndarray, held: HeldOut, query: np.ndarray, popularity: np.ndarray, rng) -> list:
    catalog = recommender.index.catalog
    histories = histories_of(held, users)
    apparel = [item for item in catalog.items if item.category == "apparel" and item.stock > 0]
    phones = [item for item in catalog.items if item.category == "phones" and item.stock > 0]
    requests = []
    for n, user in enumerate(users):
        shape = n % 4
        entities: list[Entity] = []
        context = DialogueContext(turn=1)
        if shape == 1:
            entities = [Entity(type="category", value="shoes", start=0, end=5, normalized="shoes")]
        elif shape == 2:
            example = apparel[int(rng.integers(len(apparel)))]
            entities = [
                Entity(type="category", value="apparel", start=0, end=7, normalized="apparel"),
                Entity(type="color", value=example.attributes.colors[0], start=8, end=12, normalized=example.attributes.colors[0]),
                Entity(type="size", value="L", start=13, end=14, normalized="L"),
            ]
        elif shape == 3:
            context = DialogueContext(turn=2, product_in_focus=phones[int(rng.integers(len(phones)))].id)
        event = SentimentScored(
            conversation_id=f"bench-{n}",
            user_id=held.train.user_ids[int(user)],
            channel="web",
            text="what would you recommend?",
            source="text",
            intent=Intent(name="recommendation_request", confidence=0.9),
            entities=entities,
            context=context,
            sentiment=Sentiment(label="neutral", score=0.0),
        )
        requests.append(RecommendationRequest(event, histories[int(user)], popularity, query))
    return requests


def solve_latency(model: AlsModel, requests: list, rounds: int) -> dict[str, float]:
    from implicit.cpu.als import AlternatingLeastSquares

    reference = AlternatingLeastSquares(factors=model.factors, regularization=model.params.regularization, alpha=1.0, num_threads=1)
    reference.item_factors = model.item_factors
    numpy_s, implicit_s, worst = [], [], 0.0
    for request in requests[:rounds]:
        weights = request.history.weights
        started = time.perf_counter()
        mine = model.user_vector(weights)
        numpy_s.append(time.perf_counter() - started)
        columns = [model.item_row[i] for i in weights]
        started = time.perf_counter()
        row = sp.csr_matrix((confidence(np.array(list(weights.values())), model.params.alpha), ([0] * len(columns), columns)), shape=(1, len(model.item_ids)))
        theirs = reference.recalculate_user(0, row)
        implicit_s.append(time.perf_counter() - started)
        worst = max(worst, float(np.abs(mine - theirs).max()))
    return {
        "numpy_p50_ms": percentile_ms(numpy_s, 50), "numpy_p99_ms": percentile_ms(numpy_s, 99),
        "implicit_p50_ms": percentile_ms(implicit_s, 50), "implicit_p99_ms": percentile_ms(implicit_s, 99),
        "max_abs_difference": worst,
    }  # fmt: skip


async def redis_read_latency(redis_url: str, histories: list[UserHistory], rounds: int) -> dict[str, float]:
    prefix = f"bench:interactions:{uuid.uuid4().hex[:8]}"
    store = InteractionStore.from_url(redis_url, prefix=prefix)
    at = datetime.now(UTC)
    try:
        users = [f"bench-user-{n}" for n in range(len(histories))]
        interactions = []
        for user, history in zip(users, histories, strict=True):
            for item, weight in history.weights.items():
                kind = InteractionKind.PURCHASE if item in history.purchases else InteractionKind.CLICK
                interactions.append(Interaction(user, item, kind, at, f"{user}/{item}"))
        await store.record_many(interactions)
        timings = []
        for n in range(rounds):
            started = time.perf_counter()
            await store.histories([users[n % len(users)]])
            timings.append(time.perf_counter() - started)
        items = np.mean([len(h.weights) for h in histories])
        return {"p50_ms": percentile_ms(timings, 50), "p99_ms": percentile_ms(timings, 99), "mean_items_per_user": round(float(items), 1)}
    finally:
        keys = [key async for key in store._client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await store._client.delete(*keys[start : start + 1000])
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2, help="Threads of the ALS fit.")
    parser.add_argument("--requests", type=int, default=4000, help="Measured recommend calls (after 400 of warm-up).")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads of the recommend calls (the service uses 1).")
    parser.add_argument("--real-embeddings", action="store_true", help="Encode the item texts with MiniLM instead of random unit vectors.")
    parser.add_argument("--output", type=Path, default=Path(".local/bench/recommender.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results: dict = {"items": args.items, "users": args.users}

    started = time.perf_counter()
    catalog = synthetic_catalog(args.items, seed=7)
    log = simulate(catalog, SimulationParams(users=args.users, seed=args.seed))
    results["simulation"] = {"seconds": round(time.perf_counter() - started, 1), "interactions": len(log), "purchases": int(log.purchases.sum()),
                             "nonzero_cells": int(log.matrix().nnz)}  # fmt: skip
    print(json.dumps(results), flush=True)

    held = hold_out_last_purchase(log)
    params = AlsParams(factors=args.factors, seed=args.seed)
    started = time.perf_counter()
    model = AlsModel.fit(held.train, params, threads=args.threads)
    results["fit"] = {"seconds": round(time.perf_counter() - started, 1), "params": params.__dict__, "threads": args.threads}
    started = time.perf_counter()
    results["quality"] = {
        "held_out_users": len(held.users),
        "hit_rate_at_10_als": round(model.hit_rate(held, 10), 4),
        "hit_rate_at_10_popularity": round(popularity_hit_rate(held, 10), 4),
    }
    results["quality"]["ratio"] = round(results["quality"]["hit_rate_at_10_als"] / results["quality"]["hit_rate_at_10_popularity"], 2)
    results["quality"]["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: results[k] for k in ("fit", "quality")}), flush=True)

    if args.real_embeddings:
        from elmo.models.embeddings import SentenceEmbedder
        from services.recommender.content import item_embeddings

        embedder = SentenceEmbedder()
        vectors = item_embeddings(catalog, embedder, None)
        query = embedder.encode(["something warm for hiking in the rain"])[0]
    else:
        vectors = rng.normal(size=(len(catalog.items), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        query = vectors[0] * 0.5 + vectors[1] * 0.5
        query /= np.linalg.norm(query)
    started = time.perf_counter()
    recommender = Recommender(ItemIndex(catalog), vectors, model, top_k=3)
    results["recommender_start_seconds"] = round(time.perf_counter() - started, 2)
    popularity = recommender.popularity_vector(dict(zip(held.train.item_ids, np.asarray(held.train.matrix().sum(axis=0)).ravel().tolist(), strict=True)))
    users = rng.choice(held.users, size=min(args.requests + 400, len(held.users)), replace=False)
    requests = requests_for(recommender, users, held, query, popularity, rng)

    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.blas_threads, "blas"):
        for request in requests[:400]:
            recommender.recommend(request)
        timings, by_shape, counts = [], {0: [], 1: [], 2: [], 3: []}, []
        for n, request in enumerate(requests[400:]):
            started = time.perf_counter()
            found = recommender.recommend(request)
            elapsed = time.perf_counter() - started
            timings.append(elapsed)
            by_shape[n % 4].append(elapsed)
            counts.append(len(found))
    names = {0: "no filter", 1: "category", 2: "category + colour + size", 3: "product in focus"}
    results["recommend_latency"] = {
        "blas_threads": args.blas_threads,
        "requests": len(timings),
        "p50_ms": percentile_ms(timings, 50),
        "p99_ms": percentile_ms(timings, 99),
        "max_ms": round(max(timings) * 1000, 3),
        "mean_recommendations": round(float(np.mean(counts)), 2),
        "mean_history_items": round(float(np.mean([len(r.history.weights) for r in requests])), 1),
        "by_shape": {names[s]: {"p50_ms": percentile_ms(t, 50), "p99_ms": percentile_ms(t, 99)} for s, t in by_shape.items()},
    }
    results["warm_user_solve"] = solve_latency(model, requests, 2000)
    print(json.dumps({k: results[k] for k in ("recommend_latency", "warm_user_solve")}), flush=True)

    redis_url = ConnectionSettings().redis_url
    results["redis_history_read"] = asyncio.run(redis_read_latency(redis_url, [r.history for r in requests[:1000]], 2000))
    print(json.dumps({"redis_history_read": results["redis_history_read"]}), flush=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
