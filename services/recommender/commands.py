"""What `elmo train recommender` and `elmo recommend` do, callable without the command line."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from elmo.brand.catalog import Catalog, load_catalog
from elmo.contracts import topics
from elmo.contracts.events import Channel, DialogueContext, Entity, Intent, Sentiment, SentimentScored
from elmo.interactions import InteractionStore, interaction_from_feedback
from elmo.models.artifacts import ArtifactStore, ModelVersion, Status
from elmo.models.registry import Decision, ModelRegistry
from elmo.models.embeddings import SentenceEmbedder
from elmo.tools.feedback_log import read_feedback
from services.recommender.als_model import (
    MIN_HELD_OUT_USERS,
    MODEL_KIND,
    AlsModel,
    AlsParams,
    Evaluation,
    FeedbackCells,
    FeedbackSeen,
    HeldOutPurchases,
    InteractionLog,
    fit_and_evaluate,
)
from services.recommender.core import RecommendationRequest
from services.recommender.service import build_recommender
from services.recommender.settings import RecommenderSettings
from services.recommender.simulation import SimulationParams, simulate

Source = Literal["simulated", "redis"]


def catalog_digest(catalog: Catalog) -> str:
    return hashlib.sha256(json.dumps([item.model_dump() for item in catalog.items], sort_keys=True).encode()).hexdigest()


def interactions_from_redis(redis_url: str, catalog: Catalog) -> InteractionLog:
    async def read() -> InteractionLog:
        store = InteractionStore.from_url(redis_url)
        try:
            return InteractionLog.from_histories(await store.all_histories(), [item.id for item in catalog.items])
        finally:
            await store.close()

    return asyncio.run(read())


def train(
    store: ArtifactStore,
    source: Source = "simulated",
    seed: int = 13,
    users: int = 5000,
    redis_url: str = "redis://127.0.0.1:6379/0",
    threads: int = 1,
    make_current: bool = True,
) -> tuple[ModelVersion, Evaluation]:
    """Fit ALS on simulated shoppers or on the clicks and purchases recorded in Redis (views are
    impressions: `UserHistory.engagement`); evaluate hit-rate@10 on each user's held-out last
    purchase against popularity; save the model fitted on all."""
    catalog = load_catalog()
    trained_on: dict[str, Any] = {"source": source}
    if source == "simulated":
        log = simulate(catalog, SimulationParams(users=users, seed=seed))
        trained_on |= {"users": users, "seed": seed}
    else:
        log = interactions_from_redis(redis_url, catalog)
        trained_on |= {"users": len(log.user_ids)}
    if len(log) == 0:
        raise ValueError(f"no interactions to learn from ({source})")
    started = time.perf_counter()
    params = AlsParams(seed=seed)
    model, evaluation = fit_and_evaluate(log, params, threads)
    meta = {
        "trained_on": trained_on,
        "interactions": len(log),
        "catalog_sha256": catalog_digest(catalog),
        "fit_seconds": round(time.perf_counter() - started, 2),
        "metrics": evaluation.as_metrics(),
    }
    return model.save(store, meta, make_current=make_current), evaluation


def recommend_text(
    user_id: str, text: str, entities: Sequence[Entity], settings: RecommenderSettings
) -> list[dict[str, Any]]:
    """Top-k for one message of one user, with the user's interactions from Redis; the message is
    taken as a recommendation request (no intent model), with the entities given."""
    embedder = SentenceEmbedder(threads=settings.model_threads)
    recommender = build_recommender(settings, embedder)

    async def read():  # noqa: ANN202
        store = InteractionStore.from_url(settings.redis_url, settings)
        try:
            return await store.history(user_id), await store.popularity()
        finally:
            await store.close()

    history, popularity = asyncio.run(read())
    focus = next((e.normalized for e in entities if e.type == "product" and e.normalized), None)
    event = SentimentScored(
        conversation_id=f"cli-{user_id}",
        user_id=user_id,
        channel=Channel.OTHER,
        text=text,
        source="text",
        intent=Intent(name="recommendation_request", confidence=1.0),
        entities=list(entities),
        context=DialogueContext(product_in_focus=focus),
        sentiment=Sentiment(label="neutral", score=0.0),
    )
    request = RecommendationRequest(event, history, recommender.popularity_vector(popularity), embedder.encode([text])[0])
    return [
        {"model": recommender.version, **recommendation.model_dump(exclude={"tracking_id"})}
        for recommendation in recommender.recommend(request)
    ]


# --- refitting from the feedback log ------------------------------------------------------------

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_CELLS_FILE = "checkpoint-cells.npz"
REPLAY_LOCK_FILE = ".replay.lock"
# 2: cells of clicks and purchases only, with each cell's first interaction. A format-1 checkpoint
# (no "format") holds view weight in its cells, which cannot be taken out again (a cell is one
# sum): it is refused, and the refit starts from the earliest retained offset instead.
CHECKPOINT_FORMAT = 2


class RefitInProgress(RuntimeError):
    """Another replay (this process or another) holds the kind's replay lock."""


@dataclass
class ReplayReport:
    version: str
    decision: Decision
    training_data: dict[str, Any]
    events: int  # feedback records read
    interactions: int  # views, clicks and purchases among them (after the users prefix)
    views: int  # of which views: impressions, not fitted on
    cells: int  # (user, item) cells fitted on
    users: int
    read_seconds: float
    fit_seconds: float
    gate_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promoted": self.decision.promoted,
            "reason": self.decision.reason,
            "candidate_metrics": self.decision.candidate_metrics,
            "current_metrics": self.decision.current_metrics,
            "training_data": self.training_data,
            "events": self.events,
            "interactions": self.interactions,
            "views": self.views,
            "cells": self.cells,
            "users": self.users,
            "read_seconds": self.read_seconds,
            "fit_seconds": self.fit_seconds,
            "gate_seconds": self.gate_seconds,
        }


def checkpoint_path(store: ArtifactStore) -> Path:
    return store.root / MODEL_KIND / CHECKPOINT_FILE


def read_checkpoint(store: ArtifactStore) -> dict[str, Any] | None:
    path = checkpoint_path(store)
    return json.loads(path.read_text()) if path.exists() else None


def _write_checkpoint(store: ArtifactStore, checkpoint: dict[str, Any], cells: FeedbackCells) -> None:
    # Cells first, then the offsets that describe them, each by rename: a crash leaves the old pair
    # or new cells with old offsets; the checkpoint names its cells file's digest to tell which.
    directory = store.root / MODEL_KIND
    directory.mkdir(parents=True, exist_ok=True)
    staged = directory / f".{CHECKPOINT_CELLS_FILE}.tmp"
    cells.write(staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    staged.rename(directory / CHECKPOINT_CELLS_FILE)
    staged_json = directory / f".{CHECKPOINT_FILE}.tmp"
    staged_json.write_text(json.dumps({**checkpoint, "format": CHECKPOINT_FORMAT, "cells_sha256": digest}, indent=2, sort_keys=True))
    staged_json.rename(directory / CHECKPOINT_FILE)


def checkpoint_problem(checkpoint: dict[str, Any], topic: str, users_prefix: str | None) -> str | None:
    """Why a replay of `topic` (users `users_prefix`) cannot go on from `checkpoint`; None if it can."""
    if checkpoint.get("format", 1) != CHECKPOINT_FORMAT:
        return (
            f"checkpoint is format {checkpoint.get('format', 1)}, not {CHECKPOINT_FORMAT}: its cells include views, "
            "which refits no longer fit on; replay from earliest (or a time) to rebuild it"
        )
    if checkpoint["topic"] != topic or checkpoint.get("users_prefix") != users_prefix:
        return f"checkpoint is of {checkpoint['topic']} users {checkpoint.get('users_prefix')!r}, not {topic} {users_prefix!r}"
    return None


def _resume(store: ArtifactStore, topic: str, users_prefix: str | None) -> tuple[dict[str, Any], FeedbackCells]:
    checkpoint = read_checkpoint(store)
    if checkpoint is None:
        raise FileNotFoundError(f"no replay checkpoint at {checkpoint_path(store)}: replay from earliest or a time first")
    if (problem := checkpoint_problem(checkpoint, topic, users_prefix)) is not None:
        raise ValueError(problem)
    cells_file = store.root / MODEL_KIND / CHECKPOINT_CELLS_FILE
    if hashlib.sha256(cells_file.read_bytes()).hexdigest() != checkpoint["cells_sha256"]:
        raise ValueError(f"{cells_file} does not match {checkpoint_path(store)} (interrupted write): replay from earliest")
    return checkpoint, FeedbackCells.read(cells_file)


@contextmanager
def _replay_lock(store: ArtifactStore) -> Iterator[None]:
    """One replay per model store at a time, across threads and processes (flock per open file)."""
    directory = store.root / MODEL_KIND
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / REPLAY_LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise RefitInProgress(f"a replay of {MODEL_KIND} is already running on {store.root}") from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replay_and_train(
    registry: ModelRegistry,
    bootstrap_servers: str,
    start: str | datetime = "earliest",
    seed: int = 13,
    *,
    topic: str = topics.FEEDBACK.name,
    users_prefix: str | None = None,
    end: Mapping[int, int] | None = None,
    force: bool = False,
    threads: int = 1,
    item_ids: Sequence[str] | None = None,
    write_checkpoint: bool = True,
    min_held_out: int = MIN_HELD_OUT_USERS,
) -> ReplayReport:
    """Replay elmo.feedback from `start` ("earliest", "checkpoint" or a time) to the end offsets of
    now (or `end`), fit ALS with `seed` on the clicks and purchases, register the version and put it
    through the gate (`judge_refit`; `force` promotes without it).

    Same records, users prefix and seed: same cells, same factors, same content-hash version.
    From a checkpoint, the cells saved by the last replay are extended with what came after it,
    so the result equals a replay of the whole range (while the topic still held it).
    """
    store = registry.store
    with _replay_lock(store):
        started = time.perf_counter()
        if start == "checkpoint":
            checkpoint, cells = _resume(store, topic, users_prefix)
            origin = checkpoint["from"]
            first = {int(p): r[0] for p, r in checkpoint["offsets"].items()}
            records, covered = read_feedback(bootstrap_servers, {int(p): r[1] for p, r in checkpoint["offsets"].items()}, topic, end)
        else:
            cells, origin, first = FeedbackCells(), start if isinstance(start, str) else start.isoformat(), {}
            records, covered = read_feedback(bootstrap_servers, start, topic, end)
        seen: set[str] = set()  # a record produced twice (a producer retry) counts once
        interactions = views = 0
        for record in records:
            interaction = interaction_from_feedback(record.event)
            if interaction is None or record.event.event_id in seen:
                continue
            if users_prefix is not None and not interaction.user_id.startswith(users_prefix):
                continue
            seen.add(record.event.event_id)
            views += not cells.add(interaction, record.partition, record.offset)
            interactions += 1
        items = sorted(item_ids) if item_ids is not None else sorted(item.id for item in load_catalog().items)
        log = cells.to_log(items)
        read_seconds = time.perf_counter() - started
        if len(log) == 0:
            raise ValueError(f"no clicks or purchases of catalog items in {topic} {covered.as_dict()} (users prefix {users_prefix!r})")

        started = time.perf_counter()
        params = AlsParams(seed=seed)
        model = AlsModel.fit(log, params, threads)
        fit_seconds = time.perf_counter() - started

        started = time.perf_counter()
        offsets = {str(p): [first.get(p, s), e] for p, (s, e) in sorted(covered.offsets.items())}
        training_data = {
            "topic": topic,
            "from": origin,
            "offsets": offsets,
            "read": covered.as_dict(),
            "users_prefix": users_prefix,
            "seed": seed,
            "undecodable": covered.undecodable,
        }
        record = registry.register(
            MODEL_KIND,
            model.write_files,
            training_data,
            {"cells": len(log), "users": len(log.user_ids), "fit_seconds": round(fit_seconds, 2)},
            hyper_parameters=asdict(params),
            items=len(log.item_ids),
            users=len(log.user_ids),
        )
        decision = judge_refit(registry, record.version, cells, log, topic, params, threads, force=force, min_held_out=min_held_out)
        gate_seconds = time.perf_counter() - started
        if write_checkpoint:
            _write_checkpoint(store, {"topic": topic, "from": origin, "offsets": offsets, "users_prefix": users_prefix}, cells)
    return ReplayReport(
        record.version, decision, training_data, covered.records, interactions, views, len(log), len(log.user_ids),
        round(read_seconds, 3), round(fit_seconds, 3), round(gate_seconds, 3),
    )  # fmt: skip


def judge_refit(
    registry: ModelRegistry,
    version: str,
    cells: FeedbackCells,
    log: InteractionLog,
    topic: str,
    params: AlsParams,
    threads: int = 1,
    *,
    force: bool = False,
    min_held_out: int = MIN_HELD_OUT_USERS,
) -> Decision:
    """The gate of a refit: promote the candidate `version` (fitted on all of `log`) or not.

    Held out: each user's last purchase among the cells new to the current version (no interaction
    of the cell in what it was fitted on: `FeedbackSeen` of its meta, its replayed offsets; for a
    version fitted on simulated shoppers, every cell), for users with 2+ purchased items, with every
    trace of that (user, item) cell. Both versions solve the user's factors from the rest of their
    clicks and purchases.

    The candidate is scored by a twin: the same hyper-parameters and seed fitted on `log` without
    the held-out cells. Scored itself, it finds purchases it was fitted on (on one replay of
    elmo.feedback, 0.99 against the current version's 0.28, and promoted). The twin is only
    evaluated; the version served is the one fitted on everything, because it stays a function of
    the log and seed alone (same records and seed, same version; a checkpointed replay equals a
    whole one), whereas what is held out depends on which version is current. The two differ by one
    cell per held-out user.

    Fewer than `min_held_out` held-out users and a current version exists: rejected ("too few
    held-out purchases: N"), since a hit-rate over a handful of purchases is noise; the current
    version keeps serving, its range does not move, so new purchases accumulate until a later refit
    has enough. Without a current version the candidate is promoted (as the registry does).
    """
    if force:
        return registry.promote(MODEL_KIND, version)
    store = registry.store
    current = store.current_version(MODEL_KIND)
    if current == version:  # same records and seed as the current version: the registry re-announces it
        return registry.promote_if_better(MODEL_KIND, version, HeldOutPurchases((), ()).evaluator())
    seen = FeedbackSeen() if current is None else FeedbackSeen.of(store.get(MODEL_KIND, current).meta)
    held = HeldOutPurchases.of(log, cells.purchases_unseen(log, topic, seen))
    described = (
        f"last purchase of {len(held)} users among cells new to {current or 'no version'}; the candidate scored by its twin fitted without them"
    )
    if current is not None and len(held) < min_held_out:
        reason = f"too few held-out purchases: {len(held)} (at least {min_held_out}: new purchases since {current})"
        evaluation = {"at": datetime.now(UTC).isoformat(), "held_out": described, "held_out_users": len(held), "min_held_out": min_held_out,
                      "baseline": {"version": current}}  # fmt: skip
        store.update_meta(MODEL_KIND, version, status=Status.REJECTED.value, status_reason=reason,
                          status_changed_at=evaluation["at"], evaluation=evaluation)  # fmt: skip
        return Decision(MODEL_KIND, version, False, reason, current)
    twin = AlsModel.fit(held.train, params, threads) if len(held) and held.train is not None else None
    return registry.promote_if_better(MODEL_KIND, version, held.evaluator(stand_ins={version: twin} if twin else None, held_out=described))
