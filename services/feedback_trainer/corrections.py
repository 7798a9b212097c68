"""Agents' corrections -> a fine-tuned head (nlu intent or sentiment) -> the promotion gate.

What a correction and a confident weak label are, and how they are collected in Redis, is
`elmo.learning.corrections` (shared with `elmo state rebuild`). `CorrectionTrainer` is a collector
that also fine-tunes: when `batch` new corrections of a kind are waiting, or the timer fires with
any waiting, the current head is fine-tuned (Adam, a few epochs, seeded) on them mixed with a
replayed sample of its original training data so the other labels are not forgotten, saved as a
candidate in the registry and put through its gate (held-out accuracy may not fall more than the
tolerance). The registry announces a promotion on elmo.model-updates and the serving service (nlu,
sentiment) swaps the head in.

Weak labels never start a fine-tune (the model's own outputs alone would only confirm it); a
fine-tune started by corrections takes them all, at a lower weight than the corrections, minus
those a correction of the same fine-tune labels differently.

Recent labelled traffic: the corrections of promoted fine-tunes are kept (the newest
`RECENT_LABELLED_KEPT`, the newest label per text). Each later fine-tune replays them, so what
agents taught is not forgotten, and the gate guards them: besides held-out accuracy, the
candidate's accuracy on them (`recent_labelled_accuracy`) may not fall more than the tolerance
below the current head's.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio.to_thread
import numpy as np
import redis.asyncio as redis

from elmo.learning.corrections import (
    CorrectionCollector, CorrectionKind, CorrectionMetrics, Correction, WeakLabelConfig, without_contradictions,
)  # fmt: skip
from elmo.models.artifacts import ModelVersion
from elmo.models.classifier import EmbeddingClassifier
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import Decision, Evaluator, ModelRegistry
from elmo.reply_bandit import Outcome

log = logging.getLogger("elmo.feedback_trainer")

# Meta of the current head a fine-tuned one keeps: how it is served (nlu's confidence floor) and
# evaluated (the seed and sources of sentiment's VADER split).
INHERITED_META = ("min_confidence", "seed", "vader_sources")
RECENT_LABELLED_METRIC = "recent_labelled_accuracy"


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 8
    learning_rate: float = 5e-4
    replay_examples: int = 600
    correction_weight: float | None = None  # None: the kind's own (CorrectionKind.correction_weight)
    weak_label_weight: float = 0.5  # below a replayed original (1.0): the model's own output, confirmed only by a customer's +1
    seed: int = 13


def fine_tune_head(
    kind: CorrectionKind,
    head: EmbeddingClassifier,
    embedder: SentenceEmbedder,
    corrections: Sequence[Correction],
    config: FineTuneConfig = FineTuneConfig(),
    weak_labels: Sequence[Correction] = (),
    recent: Sequence[Correction] = (),
) -> tuple[EmbeddingClassifier, dict[str, Any]]:
    """A copy of `head` fine-tuned on `corrections`, `weak_labels` and a seeded replay of its original
    training data plus the `recent` corrections of earlier promoted fine-tunes."""
    originals = kind.originals()
    replay = random.Random(config.seed).sample(originals, min(config.replay_examples, len(originals)))
    replay += [(r.text, r.label) for r in recent]
    examples = [(c.text, c.label) for c in corrections] + [(w.text, w.label) for w in weak_labels] + replay
    texts = [text for text, _ in examples]
    weights = np.array(
        [config.correction_weight or kind.correction_weight] * len(corrections) + [config.weak_label_weight] * len(weak_labels) + [1.0] * len(replay), dtype=np.float32
    )
    tuned = copy.deepcopy(head)
    tuned.config = type(head.config)(**{**asdict(head.config), "seed": config.seed})
    tuned.fine_tune(kind.features(embedder.encode(texts), texts), [label for _, label in examples], config.epochs, config.learning_rate, weights)
    training_data = {
        "source": f"elmo.feedback {kind.feedback.value}",
        "corrections": len(corrections),
        "users": len({c.user_id for c in corrections}),
        "weak_labels": len(weak_labels),
        "replayed_examples": len(replay),
        "recent_labelled": len(recent),
        "feedback_event_ids": [c.feedback_event_id for c in corrections][:200],
        "weak_label_feedback_event_ids": [w.feedback_event_id for w in weak_labels][:200],
        **asdict(config),
        "correction_weight": config.correction_weight or kind.correction_weight,
    }
    return tuned, training_data


class HeadFineTuner:
    """Fine-tunes the current head of a kind on corrections, saves the candidate and runs the gate (CPU work)."""

    def __init__(self, kind: CorrectionKind, registry: ModelRegistry, embedder: SentenceEmbedder, config: FineTuneConfig = FineTuneConfig()) -> None:
        self.kind = kind
        self.registry = registry
        self.embedder = embedder
        self.config = config
        self._evaluator: Evaluator | None = None

    def __call__(self, corrections: Sequence[Correction], weak_labels: Sequence[Correction] = (), recent: Sequence[Correction] = ()) -> Decision:
        model_kind = self.kind.model_kind
        current = self.registry.store.current(model_kind)
        head, training_data = fine_tune_head(
            self.kind, EmbeddingClassifier.load(current.path), self.embedder, corrections, self.config, weak_labels, recent
        )
        inherited = {key: current.meta[key] for key in INHERITED_META if key in current.meta}
        record = self.registry.register(model_kind, head.save, training_data=training_data, embedding_model=self.embedder.version, **inherited)
        if self._evaluator is None:
            self._evaluator = self.kind.evaluator(self.embedder)  # loads the held-out set once, on first use
        return self.registry.promote_if_better(model_kind, record.version, self.guarded(self._evaluator, recent))

    def guarded(self, held_out: Evaluator, recent: Sequence[Correction]) -> Evaluator:
        """`held_out` plus the accuracy on recent labelled traffic as a guard metric (none without it)."""
        if not recent:
            return held_out
        texts, labels = [r.text for r in recent], [r.label for r in recent]
        features = self.kind.features(self.embedder.encode(texts), texts)

        def evaluate(version: ModelVersion) -> dict[str, float]:
            predicted = [label for label, _ in EmbeddingClassifier.load(version.path).predict(features)]
            accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
            return {**held_out.evaluate(version), RECENT_LABELLED_METRIC: accuracy}

        return Evaluator(
            held_out.primary_metric, evaluate, f"{held_out.held_out}; guard: {len(recent)} recent corrections",
            guard_metrics=(*held_out.guard_metrics, RECENT_LABELLED_METRIC),
        )  # fmt: skip


class CorrectionTrainer(CorrectionCollector):
    """Collects the corrections of one kind and fine-tunes when `batch` wait; with `weak_labels`,
    also the confident weak labels of that kind, which join a fine-tune but never start one."""

    def __init__(
        self,
        client: redis.Redis,
        fine_tune: Callable[[Sequence[Correction], Sequence[Correction], Sequence[Correction]], Decision],
        *,
        kind: CorrectionKind,
        prefix: str,
        batch: int,
        per_user_per_hour: int,
        applied_ttl_s: int,
        metrics: CorrectionMetrics | None = None,
        weak_labels: WeakLabelConfig | None = None,
    ) -> None:
        super().__init__(
            client, kind=kind, prefix=prefix, per_user_per_hour=per_user_per_hour, applied_ttl_s=applied_ttl_s, metrics=metrics,
            weak_labels=weak_labels,
        )  # fmt: skip
        self.fine_tune = fine_tune
        self.batch = batch
        self._training: asyncio.Task | None = None
        self.decisions: list[Decision] = []

    async def collected(self, outcomes: Sequence[Outcome]) -> None:
        if Outcome.COUNTED in outcomes and await self.pending() >= self.batch:
            self.train_in_background()

    def train_in_background(self) -> None:
        if self._training is None or self._training.done():
            self._training = asyncio.get_running_loop().create_task(self.train_pending())

    async def train_pending(self) -> Decision | None:
        """Fine-tune on what is waiting and judge it; the CPU work runs in a worker thread."""
        corrections = await self.take_pending()
        if not corrections:
            return None
        model_kind = self.kind.model_kind
        taken = await self.take_weak_labels()
        weak_labels = without_contradictions(taken, corrections)
        if len(taken) > len(weak_labels):
            self.metrics.weak_labels.labels(model_kind, "contradicted").inc(len(taken) - len(weak_labels))
        # This batch's word on a text replaces an earlier one.
        recent = without_contradictions(await self.recent_labelled(), corrections)
        started = time.monotonic()
        try:
            decision = await anyio.to_thread.run_sync(self.fine_tune, corrections, weak_labels, recent)
        except Exception:
            self.metrics.fine_tunes.labels(model_kind, "failed").inc()
            log.exception(
                f"{model_kind} fine-tune failed; its corrections and weak labels are put back",
                extra={"fields": {"corrections": len(corrections), "weak_labels": len(weak_labels)}},
            )
            await self.put_back(corrections, weak_labels)
            return None
        outcome = "promoted" if decision.promoted else "rejected"
        self.metrics.fine_tunes.labels(model_kind, outcome).inc()
        if decision.promoted:  # what the serving head now knows joins the recent labelled traffic
            await self.remember_promoted(corrections)
        if weak_labels:
            self.metrics.weak_labels.labels(model_kind, "used").inc(len(weak_labels))
        self.decisions.append(decision)
        log.info(
            f"{model_kind} head fine-tuned on corrections: {outcome}",
            extra={"fields": {"version": decision.version, "reason": decision.reason, "corrections": len(corrections),
                              "weak_labels": len(weak_labels), "weak_labels_contradicted": len(taken) - len(weak_labels),
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
        await super().close()
