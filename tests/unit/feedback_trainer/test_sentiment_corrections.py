"""Sentiment corrections fine-tune the sentiment head through the same mechanism as intent ones: a
brand's slang is learnt, messages that merely contain the word keep their label, and a poisoned
batch cannot pass the promotion gate."""

from __future__ import annotations

import time

import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models.artifacts import ArtifactStore, Status
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.registry import ModelRegistry
from elmo.models.sentiment_model import LABELS, MODEL_KIND, load_sentiment_model, read_brand_examples
from elmo.reply_bandit import ReplyRecord
from elmo.runtime.stage import RejectedInput
from elmo.learning.corrections import SENTIMENT, Correction, correction_from
from services.feedback_trainer.corrections import HeadFineTuner

# "mid" is slang for mediocre: a complaint the head reads as neutral or even positive.
MID = [
    "the hoodie is mid", "honestly mid quality", "kinda mid tbh", "the new drop is mid", "these jeans are so mid",
    "mid at best", "the colours are mid", "the fabric feels mid", "mid jacket for that price", "mid fit ngl",
    "the sneakers are mid", "that collab was mid", "mid packaging, mid product", "the sale was mid", "mid stitching",
    "the winter line is mid", "your tees are mid now", "mid, expected better", "the print is mid", "lowkey mid",
]  # fmt: skip
MID_UNSEEN = ["the quality is mid", "mid hoodie tbh", "so mid", "this season's drop is mid", "that jacket? mid"]
# Plain requests that contain the word: they must stay neutral.
MID_NEUTRAL = ["do you have it in mid blue?", "is the skirt mid length?", "can it arrive by mid next week?"]
TARGET = "negative"


def tuner(store: ArtifactStore, embedder: SentenceEmbedder) -> HeadFineTuner:
    return HeadFineTuner(SENTIMENT, ModelRegistry(store, tolerance=0.01), embedder)


def predicted(store: ArtifactStore, embedder: SentenceEmbedder, texts: list[str], version: str | None = None) -> list[str]:
    model = load_sentiment_model(store.get_or_current(MODEL_KIND, version), embedder)
    return [p.label for p in model.predict(texts)]


def test_twenty_sentiment_corrections_are_learnt_and_the_head_passes_the_gate(sentiment_store: ArtifactStore, embedder: SentenceEmbedder) -> None:
    before_version = sentiment_store.current_version(MODEL_KIND)
    probes = MID + MID_UNSEEN + MID_NEUTRAL
    before = predicted(sentiment_store, embedder, probes)
    corrections = [Correction(f"fb-{n}", f"agent-{n % 4}", text, TARGET, 0.0) for n, text in enumerate(MID)]
    started = time.monotonic()
    decision = tuner(sentiment_store, embedder)(corrections)
    seconds = time.monotonic() - started
    after = predicted(sentiment_store, embedder, probes, decision.version)
    print(
        f"taught {before[:20].count(TARGET)}/20 -> {after[:20].count(TARGET)}/20 {TARGET}, unseen {before[20:25].count(TARGET)}/5 -> "
        f"{after[20:25].count(TARGET)}/5, 'mid' requests neutral {before[25:].count('neutral')}/3 -> {after[25:].count('neutral')}/3; "
        f"{seconds:.1f} s fine-tune + gate; {decision.reason}"
    )
    assert before[:20].count(TARGET) <= 10  # the head did not already know
    assert after[:20].count(TARGET) >= 19 and after[20:25].count(TARGET) >= 4
    assert after[25:] == ["neutral"] * 3
    assert decision.promoted, decision.reason
    assert decision.candidate_metrics["brand_accuracy"] >= decision.current_metrics["brand_accuracy"] - 0.01
    assert sentiment_store.current_version(MODEL_KIND) == decision.version != before_version
    meta = sentiment_store.get(MODEL_KIND, decision.version).meta
    assert meta["training_data"]["corrections"] == 20 and meta["training_data"]["source"] == "elmo.feedback sentiment_corrected"
    assert meta["parent_version"] == before_version and meta["seed"] == sentiment_store.get(MODEL_KIND, before_version).meta["seed"]


def test_a_flood_of_wrong_sentiment_corrections_does_not_pass_the_gate(sentiment_store: ArtifactStore, embedder: SentenceEmbedder) -> None:
    before_version = sentiment_store.current_version(MODEL_KIND)
    training = [e for e in read_brand_examples() if e.split == "train"][:200]
    # Every message relabelled to the next label: what a troll or a broken tool would send.
    wrong = [Correction(f"fb-{n}", "troll", e.text, LABELS[(LABELS.index(e.label) + 1) % len(LABELS)], 0.0) for n, e in enumerate(training)]
    decision = tuner(sentiment_store, embedder)(wrong)
    print(decision.reason)
    assert not decision.promoted
    assert sentiment_store.current_version(MODEL_KIND) == before_version
    assert sentiment_store.get(MODEL_KIND, decision.version).meta["status"] == Status.REJECTED.value


def reply(text: str = "the hoodie is mid") -> ReplyRecord:
    return ReplyRecord("r-1", "product_info", "product_info:0", "product_inquiry", text, "c1", "u1")


def correction_feedback(label: str | None, reply_event_id: str | None = "r-1") -> Feedback:
    return Feedback(conversation_id="c1", user_id="agent-1", channel="web", kind=FeedbackKind.SENTIMENT_CORRECTED,
                    reply_event_id=reply_event_id, corrected_label=label, event_id="fb-9")  # fmt: skip


def test_a_sentiment_correction_takes_the_text_from_the_reply_index_and_the_label_from_the_feedback() -> None:
    found = correction_from(SENTIMENT, correction_feedback("negative"), reply())
    assert (found.text, found.label, found.user_id, found.feedback_event_id) == ("the hoodie is mid", "negative", "agent-1", "fb-9")


@pytest.mark.parametrize(
    ("event", "found", "reason"),
    [
        (correction_feedback("angry"), reply(), "not a known sentiment label"),
        (correction_feedback("purchase"), reply(), "not a known sentiment label"),  # an intent is not a sentiment
        (correction_feedback(None), reply(), "not a known sentiment label"),
        (correction_feedback("negative", reply_event_id=None), reply(), "needs the reply_event_id"),
        (correction_feedback("negative"), None, "not in the reply index"),
        (correction_feedback("negative"), reply(text=" "), "no customer text"),
    ],
)
def test_unusable_sentiment_corrections_are_rejected_with_the_reason(event: Feedback, found: ReplyRecord | None, reason: str) -> None:
    with pytest.raises(RejectedInput, match=reason):
        correction_from(SENTIMENT, event, found)


def test_pending_corrections_written_before_per_kind_lists_still_read() -> None:
    old = '{"feedback_event_id": "fb-1", "user_id": "agent-1", "text": "zorblax", "intent": "purchase", "at": 0.0}'
    assert Correction.from_json(old) == Correction("fb-1", "agent-1", "zorblax", "purchase", 0.0)
