"""Intent corrections fine-tune the nlu head: new phrasings are learnt, old intents are kept, and
a poisoned batch cannot pass the promotion gate."""

from __future__ import annotations

import time

import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models.artifacts import ArtifactStore, Status
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import ModelRegistry
from elmo.reply_bandit import ReplyRecord
from elmo.runtime.stage import RejectedInput
from elmo.learning.corrections import INTENT, Correction, correction_from
from services.feedback_trainer.corrections import HeadFineTuner
from elmo.models.intent_model import INTENTS, MODEL_KIND, read_examples
from elmo.models.intent_model import load_intent_model as intent_model

# A product the training data has never seen; the brand wants "zorblax" messages read as purchases.
ZORBLAX = [
    "zorblax", "i want a zorblax", "one zorblax please", "zorblax for me", "gimme the zorblax",
    "zorblax now", "get me a zorblax", "zorblax x2", "i'll take the zorblax", "zorblax, the blue one",
    "need zorblax", "zorblax asap", "a zorblax pls", "zorblax to my place", "my zorblax order, 1 unit",
    "zorblax yes", "putting in for a zorblax", "zorblax?? want", "zorblax for my son", "two zorblax",
]  # fmt: skip
ZORBLAX_UNSEEN = ["zorblax please", "i need the zorblax", "one zorblax for me", "zorblax, want it", "the zorblax asap"]
TARGET = "purchase"


def tuner(store: ArtifactStore, embedder: SentenceEmbedder) -> HeadFineTuner:
    return HeadFineTuner(INTENT, ModelRegistry(store, tolerance=0.01), embedder)


def predicted(store: ArtifactStore, embedder: SentenceEmbedder, texts: list[str], version: str | None = None) -> list[str]:
    model = intent_model(store.get_or_current(MODEL_KIND, version), embedder, 0.3)
    return [p.intent for p in model.predict(texts)]


def test_twenty_corrections_are_learnt_and_the_head_passes_the_gate(nlu_store: ArtifactStore, embedder: SentenceEmbedder) -> None:
    before_version = nlu_store.current_version(MODEL_KIND)
    before = predicted(nlu_store, embedder, ZORBLAX + ZORBLAX_UNSEEN)
    corrections = [Correction(f"fb-{n}", f"agent-{n % 4}", text, TARGET, 0.0) for n, text in enumerate(ZORBLAX)]
    started = time.monotonic()
    decision = tuner(nlu_store, embedder)(corrections)
    seconds = time.monotonic() - started
    after = predicted(nlu_store, embedder, ZORBLAX + ZORBLAX_UNSEEN, decision.version)
    print(f"before {before.count(TARGET)}/25 {TARGET}, after {after.count(TARGET)}/25; {seconds:.1f} s; {decision.reason}")
    assert before[:20].count(TARGET) <= 12  # the head did not already know
    assert after[:20].count(TARGET) >= 19 and after[20:].count(TARGET) >= 4
    assert decision.promoted, decision.reason
    assert decision.candidate_metrics["held_out_accuracy"] >= decision.current_metrics["held_out_accuracy"] - 0.01
    assert nlu_store.current_version(MODEL_KIND) == decision.version != before_version
    meta = nlu_store.get(MODEL_KIND, decision.version).meta
    assert meta["training_data"]["corrections"] == 20 and meta["parent_version"] == before_version
    assert meta["training_data"]["weak_labels"] == 0

    # Those corrections are now recent labelled traffic. A later batch that would make the head
    # forget them (another account relabelling zorblax as complaints) may keep held-out accuracy,
    # but the guard on recent labelled traffic rejects it.
    flipped = [Correction(f"fb-x{n}", "other", text, "complaint", 0.0) for n, text in enumerate(ZORBLAX[:5])]
    forgetting = tuner(nlu_store, embedder)(flipped, (), corrections)
    print(forgetting.reason)
    assert not forgetting.promoted
    assert forgetting.candidate_metrics["recent_labelled_accuracy"] < forgetting.current_metrics["recent_labelled_accuracy"] - 0.01
    # Held-out accuracy alone would have let it through: the guard decided.
    assert forgetting.candidate_metrics["held_out_accuracy"] >= forgetting.current_metrics["held_out_accuracy"] - 0.01
    assert forgetting.reason.startswith("recent_labelled_accuracy")
    assert nlu_store.current_version(MODEL_KIND) == decision.version


def test_a_flood_of_wrong_corrections_does_not_pass_the_gate(nlu_store: ArtifactStore, embedder: SentenceEmbedder) -> None:
    before_version = nlu_store.current_version(MODEL_KIND)
    training = [e for e in read_examples() if e.split == "train"][:200]
    # Every message relabelled to the next intent: what a troll or a broken tool would send.
    wrong = [Correction(f"fb-{n}", "troll", e.text, INTENTS[(INTENTS.index(e.intent) + 1) % len(INTENTS)], 0.0) for n, e in enumerate(training)]
    decision = tuner(nlu_store, embedder)(wrong)
    print(decision.reason)
    assert not decision.promoted
    assert nlu_store.current_version(MODEL_KIND) == before_version
    assert nlu_store.get(MODEL_KIND, decision.version).meta["status"] == Status.REJECTED.value


def reply(text: str = "is the zorblax any good") -> ReplyRecord:
    return ReplyRecord("r-1", "product_info", "product_info:0", "product_inquiry", text, "c1", "u1")


def correction_feedback(label: str | None, reply_event_id: str | None = "r-1") -> Feedback:
    return Feedback(conversation_id="c1", user_id="agent-1", channel="web", kind=FeedbackKind.INTENT_CORRECTED,
                    reply_event_id=reply_event_id, corrected_label=label, event_id="fb-9")  # fmt: skip


def test_a_correction_takes_the_text_from_the_reply_index_and_the_label_from_the_feedback() -> None:
    found = correction_from(INTENT, correction_feedback("purchase"), reply())
    assert (found.text, found.label, found.user_id, found.feedback_event_id) == ("is the zorblax any good", "purchase", "agent-1", "fb-9")


@pytest.mark.parametrize(
    ("event", "found", "reason"),
    [
        (correction_feedback("buy_stuff"), reply(), "not a known intent"),
        (correction_feedback(None), reply(), "not a known intent"),
        (correction_feedback("purchase", reply_event_id=None), reply(), "needs the reply_event_id"),
        (correction_feedback("purchase"), None, "not in the reply index"),
        (correction_feedback("purchase"), reply(text=" "), "no customer text"),
    ],
)
def test_unusable_corrections_are_rejected_with_the_reason(event: Feedback, found: ReplyRecord | None, reason: str) -> None:
    with pytest.raises(RejectedInput, match=reason):
        correction_from(INTENT, event, found)
