"""The hand-written training sets: well-formed, big enough, and honest about their splits."""

import json
from collections import Counter
from pathlib import Path

import pytest

TRAINING_DATA = Path(__file__).resolve().parents[3] / "shared" / "elmo" / "models" / "training_data"
INTENTS_DIR = TRAINING_DATA / "intents"
INTENTS_FILE = INTENTS_DIR / "intents.jsonl"
SENTIMENT_FILE = TRAINING_DATA / "sentiment" / "brand_examples.jsonl"
INTENTS = {
    "greeting", "goodbye", "thanks", "product_inquiry", "price_inquiry", "purchase", "recommendation_request",
    "promotion_inquiry", "order_status", "return_refund", "complaint", "shipping_info", "store_info",
    "human_handoff", "inform", "affirm", "deny", "out_of_scope",
}  # fmt: skip
LABELS = {"negative", "neutral", "positive"}
MIN_TRAIN_PER_INTENT, MIN_TEST_PER_INTENT = 48, 14


def read_rows(path):
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{number}: blank line"
        row = json.loads(line)
        assert isinstance(row, dict) and isinstance(row.get("text"), str), f"{path.name}:{number}"
        assert row["text"].strip(), f"{path.name}:{number}: empty text"
        assert row["text"] == row["text"].strip(), f"{path.name}:{number}: surrounding whitespace"
        rows.append(row)
    return rows


def text_key(text):
    # Case and punctuation do not make a new example ("Thanks!!" is "thanks"); emoji do.
    return "".join(ch for ch in text.casefold() if ch.isalnum() or ord(ch) > 0x2000)


def assert_distinct(rows):
    seen = {}
    for row in rows:
        key = text_key(row["text"])
        assert key not in seen, f"{row['text']!r} repeats {seen[key]!r}"
        seen[key] = row["text"]


@pytest.fixture(scope="module")
def intent_rows():
    return read_rows(INTENTS_FILE)


@pytest.fixture(scope="module")
def sentiment_rows():
    return read_rows(SENTIMENT_FILE)


def test_intent_rows_have_exactly_the_expected_fields(intent_rows):
    for row in intent_rows:
        assert set(row) == {"text", "intent", "split"}, row
        assert row["intent"] in INTENTS, row
        assert row["split"] in {"train", "test"}, row


def test_every_intent_has_enough_train_and_test_examples(intent_rows):
    counts = Counter((row["intent"], row["split"]) for row in intent_rows)
    for intent in sorted(INTENTS):
        assert counts[intent, "train"] >= MIN_TRAIN_PER_INTENT, (intent, counts[intent, "train"])
        assert counts[intent, "test"] >= MIN_TEST_PER_INTENT, (intent, counts[intent, "test"])


def test_intent_texts_are_distinct_and_never_in_both_splits(intent_rows):
    # One pass over both splits: a text in train and test is a duplicate too.
    assert_distinct(intent_rows)


def test_sentiment_rows_have_exactly_the_expected_fields(sentiment_rows):
    for row in sentiment_rows:
        assert set(row) == {"text", "label", "split"}, row
        assert row["label"] in LABELS, row
        assert row["split"] in {"train", "test"}, row


def test_sentiment_set_is_big_balanced_and_mostly_train(sentiment_rows):
    assert len(sentiment_rows) >= 420
    labels = Counter(row["label"] for row in sentiment_rows)
    for label in LABELS:
        assert labels[label] / len(sentiment_rows) >= 0.25, labels
    train_share = sum(row["split"] == "train" for row in sentiment_rows) / len(sentiment_rows)
    assert 0.7 <= train_share <= 0.8, train_share
    for label in LABELS:
        assert any(r["label"] == label and r["split"] == "test" for r in sentiment_rows), label


def test_sentiment_texts_are_distinct(sentiment_rows):
    assert_distinct(sentiment_rows)


MORE_INTENTS_FILE = INTENTS_DIR / "intents_more.jsonl"


def test_the_extra_intent_rows_are_train_only_and_never_repeat_a_held_out_row(intent_rows):
    more = read_rows(MORE_INTENTS_FILE)
    for row in more:
        assert set(row) == {"text", "intent", "split"} and row["intent"] in INTENTS and row["split"] == "train", row
    assert min(Counter(r["intent"] for r in more).values()) >= 35
    assert_distinct(intent_rows + more)
