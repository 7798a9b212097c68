"""Redis wiped under the running chain, and rebuilt from the topics: `elmo state rebuild` brings back
what the feedback loop had learnt, so the next recommendations for the same users and the reply
bandit's counts (so its choices) are those before the wipe.

The chain (tests/chaos/conftest.py) runs on a Redis of the tests' own, which this test empties
(FLUSHALL) first, so the state compared is what this test's traffic taught. Outsider test: turns on
elmo.inbound, reactions on elmo.feedback naming the replies and items the chain published on
elmo.replies; recommendations read from elmo.recommendations; `elmo state rebuild` run as a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from elmo.contracts import topics
from elmo.contracts.events import Channel, Feedback, FeedbackKind
from elmo.interactions import InteractionSettings, InteractionStore
from elmo.learning.corrections import CORRECTION_KINDS, CorrectionCollector
from elmo.reply_bandit import ReplyLearningSettings, ReplyLearningStore
from services.generator.templates import load_templates
from services.generator.variant_policy import ThompsonVariantPolicy
from tests.chaos.traffic import TopicWatcher, producer, report, run_id, send_paced

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

USERS = 6
ASKS = ["what would you recommend for me?", "any gift ideas? show me something nice", "i want to buy something new, suggestions?"]
PROBE = ASKS[0]  # what was shown for it was viewed: the history changes the answer
POPULARITY_REFRESH_S = 5.5  # the recommender re-reads popularity at most every ELMO_RECOMMENDER_POPULARITY_REFRESH_S (5 s)


def turn(run: str, conversation: str, user: int, text: str, index: int = 0) -> dict:
    return {
        "event_id": f"wipe-{run}-{conversation}-{index}", "conversation_id": f"wipe-{run}-{conversation}", "user_id": f"wipe-{run}-u{user}",
        "channel": "web", "text": text, "created_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip


def send(bootstrap: str, topic: str, values: list[dict]) -> None:
    send_paced(producer(bootstrap), [(topic, v["conversation_id"].encode(), json.dumps(v).encode()) for v in values], rate=500)


def wait_for(watcher: TopicWatcher, topic: str, origins: set[str], timeout_s: float = 90.0) -> dict[str, dict]:
    """The first record of `topic` per origin event id."""
    deadline = time.monotonic() + timeout_s
    while True:
        found: dict[str, dict] = {}
        for value in watcher.values(topic):
            if value.get("origin_event_id") in origins:
                found.setdefault(value["origin_event_id"], value)
        if len(found) == len(origins):
            return found
        assert time.monotonic() < deadline, f"{len(origins) - len(found)} of {len(origins)} turns got nothing on {topic}"
        time.sleep(0.2)


def probe(bootstrap: str, watcher: TopicWatcher, run: str, label: str, users: int = USERS) -> dict[int, list[str]]:
    """One new conversation per user, the same question: the items the recommender suggested."""
    turns = [turn(run, f"{label}-{user}", user, PROBE) for user in range(users)]
    send(bootstrap, topics.INBOUND.name, turns)
    found = wait_for(watcher, topics.RECOMMENDATIONS.name, {t["event_id"] for t in turns})
    return {user: [r["item_id"] for r in found[t["event_id"]]["recommendations"]] for user, t in enumerate(turns)}


def reactions(run: str, replies: dict[str, dict]) -> list[Feedback]:
    """What customers (and agents) did with the replies: views of every item shown, clicks, purchases,
    ratings (user 0 rates 12 times: the hourly cap counts 10), corrections."""
    events: list[Feedback] = []
    for position, reply in enumerate(replies.values()):
        user = int(reply["user_id"].rsplit("u", 1)[1])
        about = {"conversation_id": reply["conversation_id"], "user_id": reply["user_id"], "channel": Channel.WEB, "reply_event_id": reply["event_id"]}
        for rank, item in enumerate(reply["recommendations"]):
            events.append(Feedback(kind=FeedbackKind.RECOMMENDATION_VIEWED, item_id=item["item_id"], tracking_id=item["tracking_id"], **about))
            if rank == 0 and (user + position) % 2 == 0:
                events.append(Feedback(kind=FeedbackKind.RECOMMENDATION_CLICKED, item_id=item["item_id"], tracking_id=item["tracking_id"], **about))
            if rank == 1 and user % 3 == 0:
                events.append(Feedback(kind=FeedbackKind.RECOMMENDATION_PURCHASED, item_id=item["item_id"], tracking_id=item["tracking_id"], **about))
        events += [Feedback(kind=FeedbackKind.REPLY_RATED, rating=1 if (user + position) % 3 else -1, **about) for _ in range(12 if position == 0 else 1)]
        if position in (1, 4, 7):
            events.append(Feedback(kind=FeedbackKind.INTENT_CORRECTED, corrected_label="complaint", agent_id="agent-7", **about))
        if position == 2:
            events.append(Feedback(kind=FeedbackKind.SENTIMENT_CORRECTED, corrected_label="negative", agent_id="agent-7", **about))
    return events


def applied_markers(events: list[Feedback]) -> list[str]:
    """The keys the trainer sets once it has applied each reaction."""
    interactions, learning = InteractionSettings().interactions_key_prefix, ReplyLearningSettings().learning_key_prefix
    markers = {
        FeedbackKind.RECOMMENDATION_VIEWED: f"{interactions}:applied:", FeedbackKind.RECOMMENDATION_CLICKED: f"{interactions}:applied:",
        FeedbackKind.RECOMMENDATION_PURCHASED: f"{interactions}:applied:", FeedbackKind.REPLY_RATED: f"{learning}:bandit-applied:",
        FeedbackKind.INTENT_CORRECTED: f"{learning}:corrections-applied:", FeedbackKind.SENTIMENT_CORRECTED: f"{learning}:corrections-applied:",
    }  # fmt: skip
    return [markers[e.kind] + e.event_id for e in events]


async def learnt_state(redis_url: str, users: list[str], at: datetime) -> dict:
    """Histories of `users`, popularity at `at`, the bandit's counts, pending corrections and weak labels."""
    interactions, learning = InteractionStore.from_url(redis_url), ReplyLearningStore.from_url(redis_url)
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    collectors = [
        CorrectionCollector(client, kind=kind, prefix=learning.prefix, per_user_per_hour=5, applied_ttl_s=1) for kind in CORRECTION_KINDS
    ]  # fmt: skip
    try:
        strategies = [key.rsplit(":", 1)[1] async for key in client.scan_iter(match=learning.bandit_key("*"))]
        return {
            "histories": await interactions.histories(users),
            "popularity": await interactions.popularity(at),
            "counts": await learning.counts(strategies),
            "pending": {c.kind.model_kind: sorted(x.feedback_event_id for x in await c.pending_corrections()) for c in collectors},
            "weak_labels": {c.kind.model_kind: sorted(x.feedback_event_id for x in await c.waiting_weak_labels()) for c in collectors},
        }
    finally:
        await interactions.close()
        await learning.close()
        await client.aclose()


def choices(counts: dict, strategies: list[str], keys: int = 200) -> dict[str, list[int]]:
    """The variant the generator's bandit would send for `keys` turns of each strategy, from these counts."""
    variants = load_templates().strategies
    policy = ThompsonVariantPolicy(lambda _: None, variants)  # type: ignore[arg-type, return-value]
    policy.counts = {strategy: dict(arms) for strategy, arms in counts.items()}
    return {s: [policy(s, len(variants[s]), f"turn-{k}") for k in range(keys)] for s in strategies}


def gauge(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("elmo_state_rebuild_needed "):
                return float(line.split()[1])
    return None


def test_a_wiped_redis_is_rebuilt_from_the_topics(chaos_chain, trained_model_store) -> None:
    chain, run = chaos_chain, run_id()
    store = redis.Redis(port=chain.redis.port)
    trainer = next(s for s in chain.services if s.module == "services.feedback_trainer")
    store.flushall()  # the test's own Redis: what earlier tests left is not part of the comparison
    since = datetime.now(UTC)
    started = time.monotonic()
    watcher = TopicWatcher(chain.bootstrap, [topics.REPLIES.name, topics.RECOMMENDATIONS.name])
    watcher.start()
    try:
        # Traffic: three questions per user, then what they did with the replies.
        turns = [turn(run, f"shop-{user}", user, ASKS[i], i) for user in range(USERS) for i in range(len(ASKS))]
        send(chain.bootstrap, topics.INBOUND.name, turns)
        replies = wait_for(watcher, topics.REPLIES.name, {t["event_id"] for t in turns})
        events = reactions(run, {t["event_id"]: replies[t["event_id"]] for t in turns})
        send(chain.bootstrap, topics.FEEDBACK.name, [json.loads(e.model_dump_json()) for e in events])
        markers, deadline = applied_markers(events), time.monotonic() + 60
        while store.exists(*markers) < len(markers):
            assert time.monotonic() < deadline, f"the trainer applied {store.exists(*markers)} of {len(markers)} reactions"
            time.sleep(0.2)

        users, at = [f"wipe-{run}-u{user}" for user in range(USERS)], datetime.now(UTC)
        before = asyncio.run(learnt_state(chain.redis.url, users, at))
        time.sleep(POPULARITY_REFRESH_S)
        # User USERS is a stranger (no reaction of theirs): what the others get differs from it
        # because of what they did, which is what the wipe loses and the rebuild must bring back.
        recommended_before = probe(chain.bootstrap, watcher, run, "before", USERS + 1)
        stranger = recommended_before.pop(USERS)

        store.flushall()  # Redis loses everything: histories, popularity, reply index, counts, corrections, dialogue, idempotency keys
        time.sleep(POPULARITY_REFRESH_S)
        recommended_wiped = probe(chain.bootstrap, watcher, run, "wiped")
        wiped = asyncio.run(learnt_state(chain.redis.url, users, at))  # learnt again since the wipe, if anything
        needed_before_rebuild = gauge(trainer.port)

        rebuild_started = time.monotonic()
        rebuilt_run = subprocess.run(
            [str(Path(sys.executable).with_name("elmo")), "state", "rebuild", "--since", since.isoformat(), "--json"],
            env={**os.environ, "ELMO_REDIS_URL": chain.redis.url, "ELMO_MODEL_STORE": str(trained_model_store.root)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        rebuild_s = time.monotonic() - rebuild_started
        assert rebuilt_run.returncode == 0, rebuilt_run.stderr
        rebuilt_report = json.loads(rebuilt_run.stdout)
        after = asyncio.run(learnt_state(chain.redis.url, users, at))
        time.sleep(POPULARITY_REFRESH_S)
        recommended_after = probe(chain.bootstrap, watcher, run, "after")
        deadline = time.monotonic() + 30
        while gauge(trainer.port) != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        needed_after_rebuild = gauge(trainer.port)
    finally:
        watcher.stop()
        store.close()

    strategies = sorted(before["counts"])
    chosen_before, chosen_wiped = choices(before["counts"], strategies), choices({}, strategies)
    counted = {s: {v: (a.successes, a.failures) for v, a in arms.items()} for s, arms in before["counts"].items()}
    changed_by_wipe = sum(recommended_wiped[u] != recommended_before[u] for u in range(USERS))
    unlike_a_stranger = sum(recommended_before[u] != stranger for u in range(USERS))
    report(
        "Redis wiped under the chain, rebuilt from the topics",
        turns=len(turns), reactions=dict(Counter(e.kind.value for e in events)), bandit_counts=counted,
        pending={k: len(v) for k, v in before["pending"].items()}, weak_labels={k: len(v) for k, v in before["weak_labels"].items()},
        users_recommended_unlike_a_stranger=f"{unlike_a_stranger}/{USERS}",
        users_whose_recommendations_the_wipe_changed=f"{changed_by_wipe}/{USERS}",
        users_with_a_history_again_when_probed_after_the_wipe=sum(not h.is_empty for h in wiped["histories"].values()),
        recommended={"before": recommended_before, "stranger": stranger, "wiped": recommended_wiped, "after": recommended_after},
        bandit_choices_the_wipe_changed=f"{sum(a != b for s in strategies for a, b in zip(chosen_before[s], chosen_wiped[s]))}/{200 * len(strategies)}",
        users_whose_recommendations_the_rebuild_restored=f"{sum(recommended_after[u] == recommended_before[u] for u in range(USERS))}/{USERS}",
        rebuild=rebuilt_report, rebuild_process_s=round(rebuild_s, 2), rebuild_needed_gauge=(needed_before_rebuild, needed_after_rebuild),
        test_s=round(time.monotonic() - started, 1),
    )  # fmt: skip
    assert before["histories"] and all(not h.is_empty for h in before["histories"].values())
    assert after["popularity"] == pytest.approx(before["popularity"], rel=1e-9)
    assert after["histories"] == before["histories"]
    assert after["counts"] == before["counts"] and choices(after["counts"], strategies) == chosen_before
    assert after["pending"] == before["pending"] and after["weak_labels"] == before["weak_labels"]
    # Not whether the wipe changed them: a reaction the trainer reads again after the wipe (its
    # idempotency keys went too) is learnt again at once, which is right but makes that a race.
    assert unlike_a_stranger > 0, "what users did changed no recommendation: the test shows nothing"
    assert recommended_after == recommended_before
    assert needed_after_rebuild == 0
