"""Refitting ALS from elmo.feedback on the real broker: a few hundred purchases and clicks of a
unique set of users, replayed from a time just before them (other tests write to the same topic:
`--users-prefix` scopes the replay), twice with one seed -> one version; another seed -> another,
which the gate does not promote (no purchase the current version was not fitted on); from the
checkpoint -> the version of the whole range again; new purchases of the same users -> a refit the
gate judges on them."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from elmo.brand.catalog import load_catalog
from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind
from elmo.contracts.topics import Topic
from elmo.models.artifacts import ArtifactStore
from elmo.models.registry import ModelRegistry
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from services.recommender.als_model import MODEL_KIND
from services.recommender.commands import read_checkpoint, replay_and_train
from tests.integration.kafka_io import produce

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[3]
USERS, EVENTS_PER_USER = 60, 6


def feedback_of_shoppers(prefix: str, seed: int = 3, events_per_user: int = EVENTS_PER_USER) -> list[dict]:
    """Purchases and clicks of USERS users, each within one category of the catalog."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = {}
    for item in load_catalog().items:
        by_category.setdefault(item.category, []).append(item.id)
    categories = sorted(c for c, items in by_category.items() if len(items) >= 4)
    values = []
    for u in range(USERS):
        liked = by_category[categories[u % len(categories)]]
        for e in range(events_per_user):
            kind = FeedbackKind.RECOMMENDATION_PURCHASED if e % 2 else FeedbackKind.RECOMMENDATION_CLICKED
            event = Feedback(conversation_id=f"{prefix}c{u}", user_id=f"{prefix}u{u:03d}", channel="web", kind=kind,
                             item_id=rng.choice(liked), created_at=datetime.now(UTC))  # fmt: skip
            values.append(json.loads(event.model_dump_json()))
    return values


def test_replaying_the_same_feedback_with_the_same_seed_gives_the_same_version(connections: ConnectionSettings, tmp_path: Path) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    prefix, updates = f"test-replay-{run}-", Topic(f"test.{run}.model-updates", "test", partitions=1)
    create_topics(bootstrap, (topics.FEEDBACK, updates))
    since = datetime.now(UTC) - timedelta(seconds=2)  # broker and test share a clock here
    values = feedback_of_shoppers(prefix)
    produce(bootstrap, topics.FEEDBACK.name, values)
    store_dir = tmp_path / "store"

    # 1. The command line, as an operator runs it (announcing on a test topic, not the shared one).
    started = time.perf_counter()
    command = [sys.executable, "-m", "elmo.cli", "train", "recommender", "--replay-from", since.isoformat(), "--users-prefix", prefix,
               "--seed", "7", "--store", str(store_dir)]  # fmt: skip
    env = {**os.environ, "ELMO_MODEL_UPDATES_TOPIC": updates.name, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'shared'}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.strip().splitlines()[-1])
    cli_seconds = time.perf_counter() - started
    assert first["promoted"] and first["interactions"] == len(values) == USERS * EVENTS_PER_USER and first["views"] == 0
    assert first["training_data"]["topic"] == "elmo.feedback" and first["training_data"]["from"] == since.isoformat()
    offsets = first["training_data"]["offsets"]
    assert set(offsets) == {str(p) for p in range(topics.FEEDBACK.partitions)}
    assert sum(end - start for start, end in offsets.values()) >= len(values)
    assert first["users"] == USERS

    # 2. Again, in process: same records, same seed -> the same content-hash version.
    registry = ModelRegistry(ArtifactStore(store_dir))
    again = replay_and_train(registry, bootstrap, since, 7, users_prefix=prefix)
    assert again.version == first["version"]
    assert again.decision.promoted and again.decision.reason == "already current; announced again"

    # 3. Another seed: other factors, another version; the first was fitted on every purchase of
    # the range, so none is left to judge the second on, and it is not promoted on nothing.
    other = replay_and_train(registry, bootstrap, since, 8, users_prefix=prefix)
    assert other.version != first["version"]
    assert not other.decision.promoted and other.decision.reason.startswith("too few held-out purchases: 0 ")
    assert registry.store.current_version(MODEL_KIND) == first["version"]

    # 4. From the checkpoint (the cells so far + what came since: nothing of these users) -> seed 7's version.
    checkpoint = read_checkpoint(registry.store)
    assert checkpoint is not None and checkpoint["users_prefix"] == prefix and checkpoint["from"] == since.isoformat()
    resumed = replay_and_train(registry, bootstrap, "checkpoint", 7, users_prefix=prefix)
    assert resumed.version == first["version"] and resumed.interactions == 0
    assert {p: r[0] for p, r in resumed.training_data["offsets"].items()} == {p: r[0] for p, r in offsets.items()}

    # 5. The same users buy again: a refit from the checkpoint is judged on those new purchases
    # (each user's last), the candidate through its twin fitted without them.
    bought_again = [v for v in feedback_of_shoppers(prefix, seed=4, events_per_user=2) if v["kind"] == FeedbackKind.RECOMMENDATION_PURCHASED]
    produce(bootstrap, topics.FEEDBACK.name, bought_again)
    judged = replay_and_train(registry, bootstrap, "checkpoint", 7, users_prefix=prefix)
    assert judged.interactions == USERS and judged.version != first["version"]
    assert judged.decision.current_metrics["held_out_users"] == judged.decision.candidate_metrics["held_out_users"] >= USERS // 2
    assert registry.store.get(MODEL_KIND, judged.version).meta["evaluation"]["baseline"]["version"] == first["version"]
    print(
        f"{len(values)} feedback events of {USERS} users: CLI {cli_seconds:.1f} s (read {first['read_seconds']} s over "
        f"{first['events']} records, fit {first['fit_seconds']} s, gate {first['gate_seconds']} s); in process read "
        f"{again.read_seconds} s, fit {again.fit_seconds} s; seed 8 gate: {other.decision.reason}; new purchases: {judged.decision.reason}"
    )
