"""`elmo state rebuild`: what the feedback loop learnt, derived again from the topics that hold it.

Redis is a cache, Kafka is the truth. Four parts of Redis's state are derived from the topics:
- `replies`: the reply index (`elmo.reply_bandit`), from the Reply events on elmo.replies (30 days),
  each expiring when the generator's entry would (its `created_at` + `ELMO_REPLY_INDEX_TTL_S`);
- `interactions`: users' histories and the items' popularity (`elmo.interactions`), from the views,
  clicks and purchases on elmo.feedback (90 days);
- `bandit`: the reply bandit's counts, from the ratings, clicks, purchases and handoff outcomes
  naming a reply (with the per-user hourly cap on ratings, as live);
- `corrections`: the pending intent and sentiment corrections and weak labels, less what a
  fine-tune already took (the model registry's training data names it), and the recent labelled
  traffic of promoted fine-tunes.

elmo.feedback is applied through `FeedbackLearner.learn`, the feedback-trainer's own core, in the
order of the events' times (each partition's own order kept), after every reply it may name is
indexed through the generator's `index_replies`; a reply's entry is removed when the replay's
clock passes its expiry, so a reaction that came after its entry expired is not credited here
either. The per-event applied markers make it idempotent: run twice, it counts once.

Into what. A lost state (no `state-epoch` mark, or a `state-lost` one: `elmo.learning.state_epoch`)
holds at most what the trainer wrote since the loss, every event of it marked: the rebuild fills in
the rest. A whole state is refused unless `--wipe` (the parts' keys are deleted first: the exact
rebuild) or `--since` within the markers' time to live: an older event's marker has expired, and
replaying it would count it twice.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from elmo.contracts import topics
from elmo.contracts.events import Feedback, Reply
from elmo.interactions import InteractionSettings, InteractionStore, interaction_from_feedback
from elmo.learning.corrections import CORRECTION_KINDS, Correction, CorrectionCollector, CorrectionKind, CorrectionMetrics
from elmo.learning.feedback import FeedbackLearner, FeedbackLearningSettings, TrainerMetrics, weak_label_config
from elmo.learning.state_epoch import epoch_key, lost_key, write_epochs
from elmo.models.artifacts import ArtifactStore, Status
from elmo.reply_bandit import Outcome, ReplyLearningSettings, ReplyLearningStore
from elmo.runtime.settings import RuntimeSettings
from elmo.tools.feedback_log import LogRecord, parse_start, read_events

PARTS = ("interactions", "bandit", "replies", "corrections")
BATCH = 500
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class StateRebuildSettings(RuntimeSettings, InteractionSettings, ReplyLearningSettings, FeedbackLearningSettings):
    """Where the state is and how it was counted: the same environment as the feedback-trainer's."""


class StateIsWhole(RuntimeError):
    """The state carries its epoch marks: replaying old events into it would count them twice."""


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """None (everything the topics retain) for no value or `earliest`; a duration (`7d`, `12h`,
    `30m`) before `now`; else an ISO time (a naive time is UTC)."""
    if value is None or value == "earliest":
        return None
    if match := _DURATION.match(value.strip()):
        return now - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        start = parse_start(value)
    except ValueError:
        raise ValueError(f"--since is an ISO time or a duration like 7d, 12h or 30m, not {value!r}") from None
    assert isinstance(start, datetime)
    return start


def parse_parts(value: str | None) -> tuple[str, ...]:
    """`interactions,bandit,...` -> the parts in their fixed order (all of them for None)."""
    if not value:
        return PARTS
    wanted = {part.strip() for part in value.split(",") if part.strip()}
    if unknown := wanted - set(PARTS):
        raise ValueError(f"--what takes {', '.join(PARTS)}; not {', '.join(sorted(unknown))}")
    return tuple(part for part in PARTS if part in wanted)


def needs_replies(parts: Iterable[str]) -> bool:
    """The bandit and the corrections credit replies: their rebuild indexes elmo.replies too."""
    return bool({"replies", "bandit", "corrections"} & set(parts))


def in_time_order(records: Sequence[LogRecord]) -> list:
    """Events of every partition merged by `created_at`; each partition's own order is kept (a
    conversation's events, in the order the trainer saw them)."""
    partitions: dict[int, list] = {}
    for record in records:
        partitions.setdefault(record.partition, []).append(record.event)
    return list(heapq.merge(*partitions.values(), key=lambda event: event.created_at))


# --- corrections: what the fine-tunes took -------------------------------------------------------


@dataclass(frozen=True)
class FineTune:
    """One fine-tune of a kind, as its version's training data in the registry tells it."""

    corrections: tuple[str, ...]  # feedback event ids, in the order they were taken
    weak_labels: tuple[str, ...]
    promoted: bool


def fine_tunes_of(store: ArtifactStore, kind: CorrectionKind) -> list[FineTune]:
    """The kind's fine-tunes on corrections, oldest first."""
    found = []
    for version in store.versions(kind.model_kind):
        data = version.meta.get("training_data") or {}
        if data.get("source") != f"elmo.feedback {kind.feedback.value}":
            continue
        promoted = version.meta.get("status") in (Status.PROMOTED.value, Status.ROLLED_BACK.value)
        found.append(FineTune(tuple(data.get("feedback_event_ids", ())), tuple(data.get("weak_label_feedback_event_ids", ())), promoted))
    return found


def taken_by_fine_tunes(
    fine_tunes: Sequence[FineTune], pending: Sequence[Correction], weak_labels: Sequence[Correction], position: dict[str, int]
) -> tuple[list[Correction], list[Correction]]:
    """What no longer waited live: a fine-tune takes everything waiting, so every correction and
    weak label collected up to the last correction a fine-tune names (by replay `position`), and
    whatever one names. Collected before the replay (no position): only what is named."""
    trained = {i for f in fine_tunes for i in f.corrections}
    used = {i for f in fine_tunes for i in f.weak_labels}
    last = max((position[i] for i in trained if i in position), default=-1)

    def taken(item: Correction, named: set[str]) -> bool:
        return item.feedback_event_id in named or position.get(item.feedback_event_id, math.inf) <= last

    return [c for c in pending if taken(c, trained)], [w for w in weak_labels if taken(w, used)]


def recent_of(fine_tunes: Sequence[FineTune], collected: dict[str, Correction]) -> list[Correction]:
    """The corrections of the promoted fine-tunes, in promotion order (those the replay found)."""
    return [collected[i] for f in fine_tunes if f.promoted for i in f.corrections if i in collected]


# --- the report ---------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    parts: tuple[str, ...]
    since: datetime | None
    wiped_keys: int = 0
    read: dict[str, int] = field(default_factory=dict)  # topic -> events read
    undecodable: dict[str, int] = field(default_factory=dict)
    interactions_recorded: int = 0
    users: int = 0
    items: int = 0
    rewards: dict[str, int] = field(default_factory=dict)  # outcome -> rewards
    bandit_arms: int = 0
    replies_indexed: int = 0  # still creditable now (the others expired during the replay)
    corrections: dict[str, dict[str, int]] = field(default_factory=dict)  # model kind -> pending, weak_labels, recent
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat() if self.since else "earliest"}

    def summary(self) -> str:
        read = ", ".join(
            f"{topic} {count}" + (f" (+{self.undecodable[topic]} undecodable, skipped)" if self.undecodable.get(topic) else "")
            for topic, count in self.read.items()
        )
        since = self.since.isoformat() if self.since else "the earliest retained"
        lines = [f"read: {read} events (since {since})"] if self.read else []
        if self.wiped_keys:
            lines.append(f"wiped: {self.wiped_keys} keys")
        if "interactions" in self.parts:
            lines.append(f"interactions: {self.interactions_recorded} recorded, {self.users} users, {self.items} items")
        if "bandit" in self.parts:
            rewards = ", ".join(f"{k} {v}" for k, v in sorted(self.rewards.items())) or "none"
            lines.append(f"bandit: {self.bandit_arms} arms; rewards {rewards}")
        if needs_replies(self.parts):
            lines.append(f"replies indexed: {self.replies_indexed}")
        for kind, counts in self.corrections.items():
            lines.append(f"corrections {kind}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        lines.append(f"seconds: {self.seconds:.2f}")
        return "\n".join(lines)


# --- the rebuild --------------------------------------------------------------------------------


class _NoInteractions:
    """The interaction store when interactions are not rebuilt: nothing is recorded."""

    async def record_many(self, interactions: Sequence) -> int:
        return 0


class _IndexOnly:
    """The reply store when the bandit is not rebuilt: replies are looked up, rewards not counted."""

    def __init__(self, store: ReplyLearningStore) -> None:
        self.store = store

    async def replies(self, event_ids: Iterable[str]):  # noqa: ANN201
        return await self.store.replies(event_ids)

    async def apply_rewards(self, rewards: Sequence, rated_per_user_per_hour: int) -> list[Outcome]:
        return [Outcome.ALREADY_COUNTED for _ in rewards]


def _families(parts: Sequence[str], interactions_prefix: str, learning_prefix: str) -> list[str]:
    """The key patterns of the parts (never a dialogue, idempotency or rate-limit key of another owner)."""
    ip, lp = interactions_prefix, learning_prefix
    families = {
        "interactions": [f"{ip}:weights:*", f"{ip}:purchases:*", f"{ip}:views:*", f"{ip}:popularity", f"{ip}:users", f"{ip}:applied:*"],
        "replies": [f"{lp}:reply:*"],
        "bandit": [f"{lp}:bandit:*", f"{lp}:bandit-applied:*", f"{lp}:bandit-rate:*"],
        "corrections": [
            f"{lp}:corrections:*", f"{lp}:corrections-applied:*", f"{lp}:corrections-rate:*",
            f"{lp}:weak-labels:*", f"{lp}:weak-labels-applied:*", f"{lp}:weak-labels-rate:*",
        ],
    }  # fmt: skip
    return [pattern for part in parts for pattern in families[part]]


def prefixes_of(parts: Sequence[str], settings: StateRebuildSettings) -> list[str]:
    """The store prefixes whose state-epoch marks the parts answer for."""
    found = [settings.interactions_key_prefix] if "interactions" in parts else []
    if needs_replies(parts):
        found.append(settings.learning_key_prefix)
    return found


async def _wipe(client: redis.Redis, patterns: Sequence[str]) -> int:
    deleted = 0
    for pattern in patterns:
        keys = [pattern] if "*" not in pattern else [k async for k in client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 1000):
            deleted += int(await client.unlink(*keys[start : start + 1000]))
    return deleted


async def _state_whole(client: redis.Redis, prefixes: Sequence[str]) -> bool:
    if not prefixes:
        return False
    epochs = int(await client.exists(*[epoch_key(p) for p in prefixes]))
    lost = int(await client.exists(*[lost_key(p) for p in prefixes]))
    return epochs == len(prefixes) and lost == 0


def marker_ttl_s(settings: StateRebuildSettings, parts: Sequence[str]) -> int:
    """How far back the applied markers of these parts reach (the shortest of their TTLs)."""
    ttls = [settings.interactions_applied_ttl_s] if "interactions" in parts else []
    if {"bandit", "corrections"} & set(parts):
        ttls.append(settings.reply_index_ttl_s)  # bandit-applied and corrections-applied live as long as a reply is creditable
    return min(ttls, default=settings.reply_index_ttl_s)


class _ReplyClock:
    """The reply index's expiries, passed as the replay's clock moves (the entries Redis would have dropped)."""

    def __init__(self, ttl_s: int, replies: Iterable[Reply] = ()) -> None:
        expiries: dict[str, float] = {}
        for reply in replies:  # a reply published twice was indexed twice: its entry lives from the last time
            expiries[reply.event_id] = max(expiries.get(reply.event_id, 0.0), reply.created_at.timestamp() + ttl_s)
        self._expiries = sorted((at, event_id) for event_id, at in expiries.items())
        self._next = 0

    def due(self, at: float) -> list[str]:
        """Entries expired at `at` and not returned before."""
        start = self._next
        while self._next < len(self._expiries) and self._expiries[self._next][0] <= at:
            self._next += 1
        return [event_id for _, event_id in self._expiries[start : self._next]]

    def remaining(self) -> list[tuple[float, str]]:
        return self._expiries[self._next :]


def collectors_for(settings: StateRebuildSettings) -> dict[CorrectionKind, CorrectionCollector]:
    """A collector per kind of correction, counting as the feedback-trainer's do (but never fine-tuning)."""
    return {
        kind: CorrectionCollector(
            redis.Redis.from_url(settings.redis_url, decode_responses=True), kind=kind, prefix=settings.learning_key_prefix,
            per_user_per_hour=settings.trainer_corrections_per_user_per_hour, applied_ttl_s=settings.reply_index_ttl_s,
            metrics=CorrectionMetrics(), weak_labels=weak_label_config(settings, kind),
        )  # fmt: skip
        for kind in CORRECTION_KINDS
    }


async def apply_log(
    settings: StateRebuildSettings,
    parts: Sequence[str],
    replies: Sequence[Reply],
    feedback: Sequence[Feedback],
    store: ArtifactStore | None,
    report: RebuildReport,
    now: datetime | None = None,
) -> RebuildReport:
    """Index `replies`, replay `feedback` (both in time order) through the trainer's core, settle the
    corrections against the registry's fine-tunes (`store`), and count what the state holds."""
    now_s = (now or datetime.now(UTC)).timestamp()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    interactions = InteractionStore.from_url(settings.redis_url, settings)
    learning = ReplyLearningStore.from_url(settings.redis_url, settings)
    corrections = collectors_for(settings) if "corrections" in parts and settings.trainer_corrections else {}
    metrics, registry = TrainerMetrics(), CollectorRegistry()
    metrics.register(registry)
    recorded = [0]
    learner = FeedbackLearner(
        interactions if "interactions" in parts else _NoInteractions(),  # type: ignore[arg-type]
        learning if "bandit" in parts else _IndexOnly(learning),  # type: ignore[arg-type]
        settings.trainer_rated_per_user_per_hour,
        corrections={kind.feedback: collector for kind, collector in corrections.items()},
        metrics=metrics,
        on_interactions=lambda count: recorded.__setitem__(0, recorded[0] + count),
    )
    clock = _ReplyClock(settings.reply_index_ttl_s, replies if needs_replies(parts) else ())
    try:
        if needs_replies(parts):
            for start in range(0, len(replies), BATCH):
                async with client.pipeline(transaction=False) as pipe:
                    learning.index_replies(pipe, replies[start : start + BATCH])
                    await pipe.execute()
        position: dict[str, int] = {}
        batch: list[Feedback] = []
        for index, event in enumerate(feedback):
            if expired := clock.due(event.created_at.timestamp()):
                if batch:  # what came before the expiry still finds the entries
                    await learner.learn(batch)
                    batch = []
                await client.delete(*[learning.reply_key(e) for e in expired])
            position.setdefault(event.event_id, index)
            batch.append(event)
            if len(batch) >= BATCH:
                await learner.learn(batch)
                batch = []
        if batch:
            await learner.learn(batch)
        # What is left expires when the generator's entry would have; what is past, now.
        async with client.pipeline(transaction=False) as pipe:
            for expires, event_id in clock.remaining():
                if expires <= now_s:
                    pipe.delete(learning.reply_key(event_id))
                else:
                    pipe.expireat(learning.reply_key(event_id), int(math.ceil(expires)))
                    report.replies_indexed += 1
            await pipe.execute()
        for kind, collector in corrections.items():
            report.corrections[kind.model_kind] = await _settle_corrections(collector, store, position)
        report.interactions_recorded = recorded[0]
        report.rewards = {
            outcome: int(value)
            for outcome in ("counted", "already_counted", "rate_limited", "unknown_reply")
            if (value := registry.get_sample_value("elmo_trainer_bandit_rewards_total", {"outcome": outcome}))
        }
        if "interactions" in parts:
            report.users = int(await client.scard(f"{settings.interactions_key_prefix}:users"))
            report.items = len({i.item_id for i in map(interaction_from_feedback, feedback) if i is not None})
        if "bandit" in parts:
            strategies = [k.rsplit(":", 1)[1] async for k in client.scan_iter(match=f"{settings.learning_key_prefix}:bandit:*", count=1000)]
            counts = await learning.counts(strategies)
            report.bandit_arms = sum(len(arms) for arms in counts.values())
        return report
    finally:
        for collector in corrections.values():
            await collector.close()
        await interactions.close()
        await learning.close()
        await client.aclose()


async def _settle_corrections(collector: CorrectionCollector, store: ArtifactStore | None, position: dict[str, int]) -> dict[str, int]:
    """Drops what the kind's fine-tunes took; restores the recent labelled traffic if it was lost."""
    fine_tunes = fine_tunes_of(store, collector.kind) if store is not None else []
    pending, weak = await collector.pending_corrections(), await collector.waiting_weak_labels()
    collected = {c.feedback_event_id: c for c in pending}
    taken, used = taken_by_fine_tunes(fine_tunes, pending, weak, position)
    await collector.discard(taken, used)
    restored = 0
    if await collector.recent_count() == 0:
        recent = recent_of(fine_tunes, collected)
        await collector.remember_promoted(recent)
        restored = len(recent)
    return {"pending": len(pending) - len(taken), "weak_labels": len(weak) - len(used), "recent_restored": restored}


def rebuild(
    settings: StateRebuildSettings,
    since: datetime | None = None,
    parts: Sequence[str] = PARTS,
    wipe: bool = False,
    timeout_s: float = 300.0,
) -> RebuildReport:
    """Rebuild `parts` from elmo.replies and elmo.feedback since `since` (None: all they retain)."""
    started = time.monotonic()
    parts = tuple(p for p in PARTS if p in parts)
    report = RebuildReport(parts, since)
    prefixes = prefixes_of(parts, settings)

    async def prepare() -> None:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            if wipe:
                report.wiped_keys = await _wipe(client, _families(parts, settings.interactions_key_prefix, settings.learning_key_prefix))
            elif await _state_whole(client, prefixes):
                ttl_s = marker_ttl_s(settings, parts)
                if since is None or since < datetime.now(UTC) - timedelta(seconds=ttl_s):
                    raise StateIsWhole(
                        f"the state under {', '.join(prefixes)} is whole (its state-epoch marks are there): replaying events older than "
                        f"the applied markers ({ttl_s / 86400:g} days) would count them twice. Use --wipe to rebuild from scratch, "
                        f"or --since within {ttl_s / 86400:g}d to fill in only what is missing."
                    )
        finally:
            await client.aclose()

    asyncio.run(prepare())  # before the end offsets are taken: what the trainer writes after a wipe is replayed too
    replies: list[Reply] = []
    if needs_replies(parts):
        # A reaction may name a reply up to the index's TTL older than itself.
        start = since - timedelta(seconds=settings.reply_index_ttl_s) if since is not None else "earliest"
        records, covered = read_events(settings.kafka_bootstrap_servers, topics.REPLIES.name, Reply, start, timeout_s=timeout_s)
        replies = in_time_order(records)
        report.read[topics.REPLIES.name], report.undecodable[topics.REPLIES.name] = len(records), covered.undecodable
    feedback: list[Feedback] = []
    if {"interactions", "bandit", "corrections"} & set(parts):
        records, covered = read_events(
            settings.kafka_bootstrap_servers, topics.FEEDBACK.name, Feedback, since or "earliest", timeout_s=timeout_s
        )
        feedback = in_time_order(records)
        report.read[topics.FEEDBACK.name], report.undecodable[topics.FEEDBACK.name] = len(records), covered.undecodable
    store = ArtifactStore(settings.model_store) if "corrections" in parts else None
    asyncio.run(apply_log(settings, parts, replies, feedback, store, report))

    async def mark() -> None:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            await write_epochs(client, prefixes, "elmo state rebuild", since=report.as_dict()["since"], parts=list(parts))
        finally:
            await client.aclose()

    asyncio.run(mark())
    report.seconds = round(time.monotonic() - started, 2)
    return report
