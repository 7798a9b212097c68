"""Intent corrections -> a fine-tuned nlu head -> the promotion gate.

An agent's `intent_corrected` feedback names a reply; the reply index gives the customer's text,
the feedback the right intent. Corrections are kept in Redis (so a restart loses none), at most
`per_user_per_hour` of them per user (a flood from one account cannot steer the model). When
`batch` new ones are waiting, or the timer fires with any waiting, the current head is fine-tuned
(Adam, a few epochs, seeded) on them mixed with a replayed sample of the original training data so
the other intents are not forgotten, saved as a candidate in the registry and put through its gate
(held-out accuracy may not fall more than the tolerance). The registry announces a promotion on
elmo.model-updates and the nlu service swaps the head in.

Keys (`<prefix>` from `ELMO_LEARNING_KEY_PREFIX`):
- `<prefix>:corrections:pending`               list of JSON corrections not trained on yet
- `<prefix>:corrections-applied:<feedback id>`  a correction already collected (or refused)
- `<prefix>:corrections-rate:<user>:<hour>`     corrections of one user in one hour
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio.to_thread
import numpy as np
import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter

from elmo.contracts.events import Feedback
from elmo.models.classifier import EmbeddingClassifier
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import Decision, Evaluator, ModelRegistry
from elmo.reply_bandit import HOUR_S, Outcome, ReplyRecord
from elmo.runtime.stage import CoreResult, RejectedInput

# The nlu model's definition (intents, features, training data) is read here, not copied.
from elmo.models.intent_model import INTENTS, MODEL_KIND, TRAINING_DATA, Example, features, read_examples, training_files

log = logging.getLogger("elmo.feedback_trainer")

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
return 1
"""


@dataclass(frozen=True)
class Correction:
    feedback_event_id: str
    user_id: str
    text: str
    intent: str
    at: float


def correction_from(event: Feedback, reply: ReplyRecord | None) -> Correction:
    """The correction an `intent_corrected` feedback makes; RejectedInput if it can never be used."""
    if event.corrected_label not in INTENTS:
        raise RejectedInput(f"corrected_label {event.corrected_label!r} is not a known intent ({', '.join(INTENTS)})")
    if not event.reply_event_id:
        raise RejectedInput("an intent correction needs the reply_event_id of the reply it corrects")
    if reply is None:
        raise RejectedInput(
            f"reply {event.reply_event_id} is not in the reply index (never a reply, or older than ELMO_REPLY_INDEX_TTL_S): no text to relabel"
        )
    if not reply.text.strip():
        raise RejectedInput(f"reply {event.reply_event_id} has no customer text to relabel")
    return Correction(event.event_id, event.user_id, reply.text, event.corrected_label, event.created_at.timestamp())


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 8
    learning_rate: float = 5e-4
    replay_examples: int = 600
    correction_weight: float = 2.0
    seed: int = 13


def fine_tune_head(
    head: EmbeddingClassifier, embedder: SentenceEmbedder, corrections: Sequence[Correction], config: FineTuneConfig = FineTuneConfig()
) -> tuple[EmbeddingClassifier, dict[str, Any]]:
    """A copy of `head` fine-tuned on `corrections` plus a seeded replay of the original training data."""
    originals = [e for e in read_examples(TRAINING_DATA) if e.split == "train"]
    originals += [e for extra in training_files(TRAINING_DATA)[1:] for e in read_examples(extra, train_only=True)]
    replay = random.Random(config.seed).sample(originals, min(config.replay_examples, len(originals)))
    examples = [Example(c.text, c.intent, "train") for c in corrections] + replay
    texts = [e.text for e in examples]
    weights = np.array([config.correction_weight] * len(corrections) + [1.0] * len(replay), dtype=np.float32)
    tuned = copy.deepcopy(head)
    tuned.config = type(head.config)(**{**asdict(head.config), "seed": config.seed})
    tuned.fine_tune(features(embedder.encode(texts), texts), [e.intent for e in examples], config.epochs, config.learning_rate, weights)
    training_data = {
        "source": "elmo.feedback intent_corrected",
        "corrections": len(corrections),
        "users": len({c.user_id for c in corrections}),
        "replayed_examples": len(replay),
        "feedback_event_ids": [c.feedback_event_id for c in corrections][:200],
        **asdict(config),
    }
    return tuned, training_data


class CorrectionMetrics:
    def __init__(self) -> None:
        self.corrections = Counter("elmo_trainer_corrections", "Intent corrections by outcome (collected, already_counted, rate_limited).", ["outcome"], registry=None)
        self.fine_tunes = Counter("elmo_trainer_nlu_fine_tunes", "Fine-tuned nlu heads by gate outcome (promoted, rejected, failed).", ["outcome"], registry=None)

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.corrections)
        registry.register(self.fine_tunes)


class HeadFineTuner:
    """Fine-tunes the current head on corrections, saves the candidate and runs the gate (CPU work)."""

    def __init__(
        self, registry: ModelRegistry, embedder: SentenceEmbedder, evaluator: Callable[[], Evaluator], config: FineTuneConfig = FineTuneConfig()
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.config = config
        self._evaluator_factory = evaluator
        self._evaluator: Evaluator | None = None

    def __call__(self, corrections: Sequence[Correction]) -> Decision:
        current = self.registry.store.current(MODEL_KIND)
        head, training_data = fine_tune_head(EmbeddingClassifier.load(current.path), self.embedder, corrections, self.config)
        record = self.registry.register(
            MODEL_KIND, head.save, training_data=training_data, embedding_model=self.embedder.version,
            min_confidence=current.meta.get("min_confidence"),
        )  # fmt: skip
        if self._evaluator is None:
            self._evaluator = self._evaluator_factory()  # loads the held-out set once, on first use
        return self.registry.promote_if_better(MODEL_KIND, record.version, self._evaluator)


class CorrectionTrainer:
    """Collects corrections (the feedback-trainer's `CorrectionsSink`) and fine-tunes when enough wait."""

    def __init__(
        self,
        client: redis.Redis,
        fine_tune: Callable[[Sequence[Correction]], Decision],
        *,
        prefix: str,
        batch: int,
        per_user_per_hour: int,
        applied_ttl_s: int,
        metrics: CorrectionMetrics | None = None,
    ) -> None:
        self._client = client
        self.fine_tune = fine_tune
        self.prefix = prefix
        self.batch = batch
        self.per_user_per_hour = per_user_per_hour
        self.applied_ttl_s = applied_ttl_s
        self.metrics = metrics or CorrectionMetrics()
        self._collect = client.register_script(_COLLECT)
        self._training: asyncio.Task | None = None
        self.decisions: list[Decision] = []

    @property
    def pending_key(self) -> str:
        return f"{self.prefix}:corrections:pending"

    async def collect(self, events: Sequence[Feedback], replies: dict[str, ReplyRecord]) -> list[CoreResult]:
        results: list[CoreResult] = []
        usable: list[Correction] = []
        for event in events:
            try:
                usable.append(correction_from(event, replies.get(event.reply_event_id or "")))
                results.append(None)
            except RejectedInput as error:
                results.append(error)
        outcomes = await self.add(usable)
        for outcome in outcomes:
            self.metrics.corrections.labels({Outcome.COUNTED: "collected"}.get(outcome, outcome.name.lower())).inc()
        if Outcome.COUNTED in outcomes and await self.pending() >= self.batch:
            self.train_in_background()
        return results

    async def add(self, corrections: Sequence[Correction]) -> list[Outcome]:
        if not corrections:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for c in corrections:
                await self._collect(
                    keys=[
                        f"{self.prefix}:corrections-applied:{c.feedback_event_id}",
                        f"{self.prefix}:corrections-rate:{c.user_id}:{int(c.at // HOUR_S)}",
                        self.pending_key,
                    ],
                    args=[json.dumps(asdict(c)), self.per_user_per_hour, 2 * HOUR_S, self.applied_ttl_s],
                    client=pipe,
                )
            results = await pipe.execute()
        return [Outcome(int(r)) for r in results]

    async def pending(self) -> int:
        return int(await self._client.llen(self.pending_key))

    async def take_pending(self) -> list[Correction]:
        """Every waiting correction, removed from the list atomically (new ones keep arriving)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(self.pending_key, 0, -1)
            pipe.delete(self.pending_key)
            raw, _ = await pipe.execute()
        return [Correction(**json.loads(r)) for r in raw]

    def train_in_background(self) -> None:
        if self._training is None or self._training.done():
            self._training = asyncio.get_running_loop().create_task(self.train_pending())

    async def train_pending(self) -> Decision | None:
        """Fine-tune on what is waiting and judge it; the CPU work runs in a worker thread."""
        corrections = await self.take_pending()
        if not corrections:
            return None
        started = time.monotonic()
        try:
            decision = await anyio.to_thread.run_sync(self.fine_tune, corrections)
        except Exception:
            self.metrics.fine_tunes.labels("failed").inc()
            log.exception("nlu fine-tune failed; its corrections are put back", extra={"fields": {"corrections": len(corrections)}})
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.lpush(self.pending_key, *[json.dumps(asdict(c)) for c in reversed(corrections)])
                await pipe.execute()
            return None
        outcome = "promoted" if decision.promoted else "rejected"
        self.metrics.fine_tunes.labels(outcome).inc()
        self.decisions.append(decision)
        log.info(
            f"nlu head fine-tuned on corrections: {outcome}",
            extra={"fields": {"version": decision.version, "reason": decision.reason, "corrections": len(corrections),
                              "seconds": round(time.monotonic() - started, 2)}},
        )  # fmt: skip
        return decision

    async def run_timer(self, interval_s: float) -> None:
        """Fine-tune whatever waits every `interval_s`, even if fewer than `batch` arrived."""
        while True:
            await asyncio.sleep(interval_s)
            if await self.pending() and (self._training is None or self._training.done()):
                self.train_in_background()
                await self._training  # type: ignore[misc]

    async def close(self) -> None:
        if self._training is not None and not self._training.done():
            await asyncio.wait([self._training], timeout=60)
        await self._client.aclose()
