"""Agents' corrections and confident weak labels: what they are, and how they are collected in Redis.

A correction (`intent_corrected` or `sentiment_corrected` feedback) names a reply; the reply index
gives the customer's text, the feedback the right label. Each kind of correction (`CorrectionKind`)
says which head it teaches, which labels are valid, how that head turns text into features, which
original training data it replays and which held-out set judges it. Corrections are kept in Redis
(so a restart loses none), at most `per_user_per_hour` of one kind per user (a flood from one
account cannot steer the model), once per feedback event.

Confident weak labels: a customer message whose reply was rated +1 while the head was sure of it
(intent confidence, or a positive or negative sentiment score, at least the kind's threshold) is
kept as a weak label of that kind, at most `per_user_per_hour` per user, once per rating, in a
buffer of the newest `kept`.

Recent labelled traffic: the corrections of promoted fine-tunes (the newest `RECENT_LABELLED_KEPT`).

`CorrectionCollector` keeps all three; the feedback-trainer's `CorrectionTrainer`
(services/feedback_trainer/corrections.py) is a collector that also fine-tunes, and
`elmo state rebuild` replays elmo.feedback into a plain collector (which never fine-tunes).

Keys (`<prefix>` from `ELMO_LEARNING_KEY_PREFIX`, `<model kind>` `nlu-intent` or `sentiment`):
- `<prefix>:corrections:<model kind>:pending`               JSON corrections not trained on yet
- `<prefix>:corrections-applied:<feedback id>`              a correction already collected (or refused)
- `<prefix>:corrections-rate:<model kind>:<user>:<hour>`    corrections of one kind, one user, one hour
- `<prefix>:corrections:<model kind>:recent`                corrections of promoted fine-tunes, newest last
- `<prefix>:weak-labels:<model kind>`                       JSON weak labels, the newest `kept`
- `<prefix>:weak-labels-applied:<model kind>:<feedback id>` a weak label already collected (or refused)
- `<prefix>:weak-labels-rate:<model kind>:<user>:<hour>`    weak labels of one kind, one user, one hour
- `<prefix>:corrections:pending`                            intent corrections left by versions before
  per-kind lists; moved to the `nlu-intent` list by `adopt_pending` when the trainer starts
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models import intent_model, sentiment_model
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import Evaluator
from elmo.reply_bandit import HOUR_S, Outcome, ReplyRecord
from elmo.runtime.stage import CoreResult, RejectedInput

_COLLECT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seen = redis.call('INCR', KEYS[2])
if seen == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
if seen > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], 'rate_limited', 'EX', ARGV[4])
  return 2
end
redis.call('SET', KEYS[1], 'collected', 'EX', ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[1])
if tonumber(ARGV[5]) > 0 then redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1) end
return 1
"""


@dataclass(frozen=True)
class CorrectionKind:
    """What one kind of correction teaches, and how its head is fine-tuned and judged."""

    feedback: FeedbackKind
    model_kind: str
    labels: tuple[str, ...]
    noun: str  # what a label is called, in rejection reasons
    features: Callable[[np.ndarray, Sequence[str]], np.ndarray]
    originals: Callable[[], list[tuple[str, str]]]  # (text, label) of the original training data, for replay
    evaluator: Callable[[SentenceEmbedder], Evaluator]  # the gate's judge, on the trainer's encoder
    confident_label: Callable[[ReplyRecord, float], str | None]  # what the head was sure of, at a threshold
    # How much one correction weighs against one replayed original in a fine-tune.
    correction_weight: float = 2.0


def _intent_originals() -> list[tuple[str, str]]:
    data = intent_model.TRAINING_DATA
    examples = [e for e in intent_model.read_examples(data) if e.split == "train"]
    examples += [e for extra in intent_model.training_files(data)[1:] for e in intent_model.read_examples(extra, train_only=True)]
    return [(e.text, e.intent) for e in examples]


def _sentiment_originals() -> list[tuple[str, str]]:
    # The brand examples ship with the code; the VADER ratings are a download the trainer may not have.
    return [(e.text, e.label) for e in sentiment_model.read_brand_examples() if e.split == "train"]


def _confident_intent(reply: ReplyRecord, min_confidence: float) -> str | None:
    """The intent nlu gave the message, if its confidence was at least `min_confidence`."""
    confidence = reply.intent_confidence
    return reply.intent if reply.intent in intent_model.INTENTS and confidence is not None and confidence >= min_confidence else None


def _confident_sentiment(reply: ReplyRecord, min_score: float) -> str | None:
    """`positive` or `negative` when the score (P(positive) - P(negative)) is at least `min_score` on
    the label's side. Never `neutral`: a score near 0 is as much a torn positive/negative as a sure neutral."""
    score = reply.sentiment_score
    if score is None:
        return None
    if reply.sentiment_label == "positive" and score >= min_score:
        return "positive"
    if reply.sentiment_label == "negative" and score <= -min_score:
        return "negative"
    return None


INTENT = CorrectionKind(
    FeedbackKind.INTENT_CORRECTED, intent_model.MODEL_KIND, intent_model.INTENTS, "intent", intent_model.features,
    _intent_originals, lambda embedder: intent_model.held_out_evaluator(embedder=embedder), _confident_intent,
    correction_weight=2.0,
)  # fmt: skip
SENTIMENT = CorrectionKind(
    FeedbackKind.SENTIMENT_CORRECTED, sentiment_model.MODEL_KIND, sentiment_model.LABELS, "sentiment label", sentiment_model.features,
    _sentiment_originals, lambda embedder: sentiment_model.held_out_evaluator(embedder=embedder), _confident_sentiment,
    # Only the 343 brand examples are replayed (not the VADER tweets the head also learnt from), so
    # corrections weighed double pulled a head trained on tweets and brand examples off the brand's
    # held-out set: 20 "mid" corrections gave 0.887 against 0.904 and were rejected; weighed as one
    # original, 0.896, and all 20 and 5 of 5 unseen phrasings are still learnt.
    correction_weight=1.0,
)  # fmt: skip
CORRECTION_KINDS = (INTENT, SENTIMENT)


def legacy_pending_key(prefix: str) -> str:
    """The one list of versions before per-kind lists, which held intent corrections only."""
    return f"{prefix}:corrections:pending"


@dataclass(frozen=True)
class Correction:
    feedback_event_id: str
    user_id: str
    text: str
    label: str
    at: float

    @classmethod
    def from_json(cls, raw: str) -> Correction:
        fields = json.loads(raw)
        if "intent" in fields:  # written before sentiment corrections, when every one was an intent
            fields["label"] = fields.pop("intent")
        return cls(**fields)


def correction_from(kind: CorrectionKind, event: Feedback, reply: ReplyRecord | None) -> Correction:
    """The correction a feedback of `kind` makes; RejectedInput if it can never be used."""
    if event.corrected_label not in kind.labels:
        raise RejectedInput(f"corrected_label {event.corrected_label!r} is not a known {kind.noun} ({', '.join(kind.labels)})")
    if not event.reply_event_id:
        raise RejectedInput(f"a {kind.noun} correction needs the reply_event_id of the reply it corrects")
    if reply is None:
        raise RejectedInput(
            f"reply {event.reply_event_id} is not in the reply index (never a reply, or older than ELMO_REPLY_INDEX_TTL_S): no text to relabel"
        )
    if not reply.text.strip():
        raise RejectedInput(f"reply {event.reply_event_id} has no customer text to relabel")
    return Correction(event.event_id, event.user_id, reply.text, event.corrected_label, event.created_at.timestamp())


@dataclass(frozen=True)
class WeakLabelConfig:
    """Which rated replies of a kind are weak labels, and how many are kept."""

    threshold: float  # the kind's `confident_label` threshold: intent confidence, or sentiment |score|
    kept: int  # the newest this many wait; a fine-tune takes them all
    per_user_per_hour: int


def weak_label_from(kind: CorrectionKind, event: Feedback, reply: ReplyRecord | None, threshold: float) -> Correction | None:
    """The weak label a rating makes: a +1 on a reply whose message the head was sure of (else None).
    A weak label is kept as a `Correction` (same fields): only its weight in a fine-tune differs."""
    if event.kind is not FeedbackKind.REPLY_RATED or event.rating != 1 or reply is None or not reply.text.strip():
        return None
    label = kind.confident_label(reply, threshold)
    if label is None or label not in kind.labels:
        return None
    return Correction(event.event_id, event.user_id, reply.text, label, event.created_at.timestamp())


def _same_text(text: str) -> str:
    return " ".join(text.casefold().split())


def without_contradictions(weak_labels: Sequence[Correction], corrections: Sequence[Correction]) -> list[Correction]:
    """The weak labels no correction contradicts: for a text an agent labels differently, the agent wins."""
    corrected: dict[str, set[str]] = {}
    for c in corrections:
        corrected.setdefault(_same_text(c.text), set()).add(c.label)
    return [w for w in weak_labels if corrected.get(_same_text(w.text), {w.label}) == {w.label}]


# Corrections of promoted fine-tunes kept as recent labelled traffic (replayed and guarded).
RECENT_LABELLED_KEPT = 200


def newest_label_per_text(corrections: Sequence[Correction]) -> list[Correction]:
    """One correction per text (case and spacing ignored): the last one, as agents' later word wins."""
    newest: dict[str, Correction] = {}
    for c in corrections:
        newest.pop(_same_text(c.text), None)
        newest[_same_text(c.text)] = c
    return list(newest.values())


def outcome_label(outcome: Outcome) -> str:
    """The metrics' name of a collection outcome: collected, already_counted or rate_limited."""
    return "collected" if outcome is Outcome.COUNTED else outcome.name.lower()


class CorrectionMetrics:
    """Shared by the trainers of every kind; `model_kind` tells them apart."""

    def __init__(self) -> None:
        self.corrections = Counter(
            "elmo_trainer_corrections", "Corrections by model kind and outcome (collected, already_counted, rate_limited).",
            ["model_kind", "outcome"], registry=None,
        )  # fmt: skip
        self.fine_tunes = Counter(
            "elmo_trainer_fine_tunes", "Heads fine-tuned on corrections, by model kind and gate outcome (promoted, rejected, failed).",
            ["model_kind", "outcome"], registry=None,
        )  # fmt: skip
        self.weak_labels = Counter(
            "elmo_trainer_weak_labels",
            "Confident weak labels by model kind and outcome (collected, already_counted, rate_limited; used or contradicted by a fine-tune).",
            ["model_kind", "outcome"], registry=None,
        )  # fmt: skip

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.corrections)
        registry.register(self.fine_tunes)
        registry.register(self.weak_labels)


class CorrectionCollector:
    """Collects the corrections of one kind (a `CorrectionsSink` of `elmo.learning.feedback`) and,
    with `weak_labels`, the confident weak labels of that kind. `collected` is called after each
    batch: the feedback-trainer's subclass starts a fine-tune there."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        kind: CorrectionKind,
        prefix: str,
        per_user_per_hour: int,
        applied_ttl_s: int,
        metrics: CorrectionMetrics | None = None,
        weak_labels: WeakLabelConfig | None = None,
    ) -> None:
        self._client = client
        self.kind = kind
        self.prefix = prefix
        self.per_user_per_hour = per_user_per_hour
        self.applied_ttl_s = applied_ttl_s
        self.metrics = metrics or CorrectionMetrics()
        self.weak_labels = weak_labels
        self._collect = client.register_script(_COLLECT)

    @property
    def pending_key(self) -> str:
        return f"{self.prefix}:corrections:{self.kind.model_kind}:pending"

    @property
    def recent_key(self) -> str:
        return f"{self.prefix}:corrections:{self.kind.model_kind}:recent"

    @property
    def weak_labels_key(self) -> str:
        return f"{self.prefix}:weak-labels:{self.kind.model_kind}"

    async def recent_labelled(self) -> list[Correction]:
        """The corrections of promoted fine-tunes, the newest label per text."""
        return newest_label_per_text([Correction.from_json(r) for r in await self._client.lrange(self.recent_key, 0, -1)])

    async def collect(self, events: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> list[CoreResult]:
        results: list[CoreResult] = []
        usable: list[Correction] = []
        for event in events:
            try:
                usable.append(correction_from(self.kind, event, replies.get(event.reply_event_id or "")))
                results.append(None)
            except RejectedInput as error:
                results.append(error)
        outcomes = await self.add(usable)
        for outcome in outcomes:
            self.metrics.corrections.labels(self.kind.model_kind, outcome_label(outcome)).inc()
        await self.collected(outcomes)
        return results

    async def collected(self, outcomes: Sequence[Outcome]) -> None:
        """Called with the outcomes of each batch of corrections (a plain collector does nothing)."""

    async def collect_weak_labels(self, ratings: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> None:
        """Keeps the weak labels these ratings make (never starts a fine-tune: see the module's doc)."""
        if self.weak_labels is None:
            return
        threshold = self.weak_labels.threshold
        found = [weak_label_from(self.kind, e, replies.get(e.reply_event_id or ""), threshold) for e in ratings]
        outcomes = await self.add_weak_labels([w for w in found if w is not None])
        for outcome in outcomes:
            self.metrics.weak_labels.labels(self.kind.model_kind, outcome_label(outcome)).inc()

    async def add(self, corrections: Sequence[Correction]) -> list[Outcome]:
        kind = self.kind.model_kind
        applied, rate = f"{self.prefix}:corrections-applied:", f"{self.prefix}:corrections-rate:{kind}:"
        return await self._add(corrections, applied, rate, self.pending_key, self.per_user_per_hour, kept=0)

    async def add_weak_labels(self, weak_labels: Sequence[Correction]) -> list[Outcome]:
        assert self.weak_labels is not None, "weak labels are off"
        kind = self.kind.model_kind
        # A correction's feedback has one kind; one rating can make a weak label of each kind, so it is marked per kind.
        applied, rate = f"{self.prefix}:weak-labels-applied:{kind}:", f"{self.prefix}:weak-labels-rate:{kind}:"
        return await self._add(weak_labels, applied, rate, self.weak_labels_key, self.weak_labels.per_user_per_hour, self.weak_labels.kept)

    async def _add(self, found: Sequence[Correction], applied: str, rate: str, key: str, per_user_per_hour: int, kept: int) -> list[Outcome]:
        """Once per feedback event, at most `per_user_per_hour` per user and hour, onto `key` (its newest `kept`; 0: all)."""
        if not found:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for c in found:
                await self._collect(
                    keys=[applied + c.feedback_event_id, f"{rate}{c.user_id}:{int(c.at // HOUR_S)}", key],
                    args=[json.dumps(asdict(c)), per_user_per_hour, 2 * HOUR_S, self.applied_ttl_s, kept],
                    client=pipe,
                )
            results = await pipe.execute()
        return [Outcome(int(r)) for r in results]

    async def adopt_pending(self, key: str) -> int:
        """Moves what waits in `key` (a list an earlier version kept) to the end of this kind's list."""
        moved = 0
        while await self._client.lmove(key, self.pending_key, "LEFT", "RIGHT") is not None:
            moved += 1
        return moved

    async def pending(self) -> int:
        return int(await self._client.llen(self.pending_key))

    async def pending_corrections(self) -> list[Correction]:
        """The waiting corrections, oldest first, left in place."""
        return [Correction.from_json(r) for r in await self._client.lrange(self.pending_key, 0, -1)]

    async def take_pending(self) -> list[Correction]:
        """Every waiting correction, removed from the list atomically (new ones keep arriving)."""
        return await self._take(self.pending_key)

    async def weak_labels_waiting(self) -> int:
        return int(await self._client.llen(self.weak_labels_key))

    async def waiting_weak_labels(self) -> list[Correction]:
        """The kept weak labels, oldest first, left in place."""
        return [Correction.from_json(r) for r in await self._client.lrange(self.weak_labels_key, 0, -1)]

    async def take_weak_labels(self) -> list[Correction]:
        """Every kept weak label (at most `kept`), removed atomically; none when weak labels are off."""
        return await self._take(self.weak_labels_key) if self.weak_labels is not None else []

    async def _take(self, key: str) -> list[Correction]:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        return [Correction.from_json(r) for r in raw]

    async def put_back(self, corrections: Sequence[Correction], weak_labels: Sequence[Correction]) -> None:
        """Taken corrections and weak labels wait again, in front of what arrived meanwhile (a fine-tune failed)."""
        async with self._client.pipeline(transaction=False) as pipe:
            if corrections:
                pipe.lpush(self.pending_key, *[json.dumps(asdict(c)) for c in reversed(corrections)])
            if weak_labels and self.weak_labels is not None:
                pipe.lpush(self.weak_labels_key, *[json.dumps(asdict(w)) for w in reversed(weak_labels)])
                pipe.ltrim(self.weak_labels_key, -self.weak_labels.kept, -1)
            await pipe.execute()

    async def discard(self, corrections: Sequence[Correction], weak_labels: Sequence[Correction]) -> None:
        """Removes these from the waiting lists (a rebuild drops what a fine-tune already took)."""
        if not corrections and not weak_labels:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for c in corrections:
                pipe.lrem(self.pending_key, 1, json.dumps(asdict(c)))
            for w in weak_labels:
                pipe.lrem(self.weak_labels_key, 1, json.dumps(asdict(w)))
            await pipe.execute()

    async def recent_count(self) -> int:
        return int(await self._client.llen(self.recent_key))

    async def remember_promoted(self, corrections: Sequence[Correction]) -> None:
        """The corrections of a promoted fine-tune join the recent labelled traffic (the newest `RECENT_LABELLED_KEPT`)."""
        if not corrections:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.rpush(self.recent_key, *[json.dumps(asdict(c)) for c in corrections])
            pipe.ltrim(self.recent_key, -RECENT_LABELLED_KEPT, -1)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
