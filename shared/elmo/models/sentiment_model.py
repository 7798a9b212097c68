"""Sentiment: a calibrated head on MiniLM embeddings, trained on human-rated text plus our own.

Training data:
- the human-rated sentences of the VADER study (Hutto & Gilbert, ICWSM 2014), shipped in the
  vaderSentiment 3.3.2 source distribution (`elmo data fetch` puts them under
  `.local/test-data/vader/`): tweets, Amazon reviews, movie reviews and NYT editorials, each with
  the mean of ~20 raters on -4..+4. Mean >= +0.5 is positive, <= -0.5 negative, else neutral;
- `training_data/sentiment/brand_examples.jsonl`: customer messages written for this brand's
  domain (polite requests are neutral, sarcasm is negative, emoji carry sentiment).
Each source is split 80/20 with a fixed seed; the 20 % parts are the held-out sets.
Features: the sentence embedding plus VADER's four lexicon scores (neg, neu, pos, compound). The
lexicon alone is the baseline; the head learns when to trust it (it rates polite requests as
positive, and misses sarcasm) from the embedding. On the VADER tweets, embeddings alone gave 0.75
held-out accuracy and embeddings + lexicon 0.82 (3 classes).
The score in [-1, 1] is P(positive) - P(negative).

The head is a versioned artefact (kind `sentiment`) in the model store: `elmo train sentiment`
makes one, the sentiment service serves it and the feedback-trainer fine-tunes it on agents'
corrections, which is why it lives here and not in the service.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elmo.models.artifacts import ArtifactStore, ModelVersion
from elmo.models.classifier import EmbeddingClassifier, HeadConfig
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.evaluation import ClassificationReport, classification_report
from elmo.models.registry import Evaluator

MODEL_KIND = "sentiment"
LABELS = ("negative", "neutral", "positive")
BRAND_EXAMPLES = Path(__file__).parent / "training_data" / "sentiment" / "brand_examples.jsonl"
VADER_SOURCES = {
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
NEUTRAL_BAND = 0.5
HELD_OUT_SHARE = 0.2
# Brand examples are few but closest to what the service sees: they count more in the loss.
BRAND_WEIGHT = 3.0
# Lexicon scores are on the scale of single embedding dimensions otherwise; this lets them matter.
LEXICON_SCALE = 3.0


def lexicon_features(texts: Sequence[str]) -> np.ndarray:
    analyzer = _vader()
    scores = (analyzer.polarity_scores(text) for text in texts)
    return np.array([[s["neg"], s["neu"], s["pos"], s["compound"]] for s in scores], dtype=np.float32).reshape(-1, 4) * LEXICON_SCALE


def features(embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    return np.hstack([embeddings, lexicon_features(texts)])


_analyzer = None


def _vader():  # noqa: ANN202 - loading the lexicon once per process
    global _analyzer
    if _analyzer is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str
    split: str


@dataclass(frozen=True)
class SentimentPrediction:
    label: str
    score: float
    confidence: float


def label_for_rating(mean_rating: float) -> str:
    if mean_rating >= NEUTRAL_BAND:
        return "positive"
    if mean_rating <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def _split(texts_and_labels: list[tuple[str, str]], source: str, seed: int) -> list[Example]:
    order = list(range(len(texts_and_labels)))
    random.Random(f"{seed}:{source}").shuffle(order)
    held_out = set(order[: round(len(order) * HELD_OUT_SHARE)])
    return [
        Example(text, label, source, "test" if i in held_out else "train") for i, (text, label) in enumerate(texts_and_labels)
    ]


def read_vader(directory: Path, seed: int, sources: Sequence[str] = tuple(VADER_SOURCES)) -> list[Example]:
    examples: list[Example] = []
    for source in sources:
        filename = VADER_SOURCES[source]
        path = directory / filename
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `elmo data fetch` (or `make test-data`) first")
        rows = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[2].strip():
                rows.append((parts[2].strip().replace("&amp;", "&"), label_for_rating(float(parts[1]))))
        examples += _split(rows, source, seed)
    return examples


def read_brand_examples(path: Path = BRAND_EXAMPLES) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Example(r["text"], r["label"], "brand", r.get("split", "train")) for r in rows]


def find_vader_directory(root: Path) -> Path:
    matches = sorted(root.rglob(VADER_SOURCES["tweets"]))
    if not matches:
        raise FileNotFoundError(f"no VADER ground-truth files under {root}: run `elmo data fetch` first")
    return matches[0].parent


class SentimentModel:
    def __init__(self, embedder: SentenceEmbedder, head: EmbeddingClassifier, version: str) -> None:
        self.embedder = embedder
        self.head = head
        self.version = version

    @classmethod
    def load(cls, store: ArtifactStore, embedder: SentenceEmbedder) -> SentimentModel:
        current = store.current(MODEL_KIND)
        return cls(embedder, EmbeddingClassifier.load(current.path), current.version)

    def predict(self, texts: Sequence[str]) -> list[SentimentPrediction]:
        return self.predict_embedded(self.embedder.encode(texts), texts)

    def predict_embedded(self, embeddings: np.ndarray, texts: Sequence[str]) -> list[SentimentPrediction]:
        """With embeddings computed upstream (nlu's, when it used the same embedding model)."""
        probabilities = self.head.predict_proba(features(embeddings, texts))
        negative, positive = self.head.labels.index("negative"), self.head.labels.index("positive")
        predictions = []
        for row in probabilities:
            best = int(row.argmax())
            score = float(np.clip(row[positive] - row[negative], -1.0, 1.0))
            predictions.append(SentimentPrediction(self.head.labels[best], round(score, 4), round(float(row[best]), 4)))
        return predictions


def vader_baseline(texts: Sequence[str]) -> list[str]:
    """VADER's lexicon alone, with its documented thresholds on the compound score (+-0.05)."""
    labels = []
    for text in texts:
        compound = _vader().polarity_scores(text)["compound"]
        labels.append("positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral")
    return labels


def evaluate(model: SentimentModel, examples: Sequence[Example]) -> dict[str, dict]:
    """Per held-out set: the model and VADER alone on the same examples."""
    by_source: dict[str, list[Example]] = {}
    for example in examples:
        by_source.setdefault(example.source, []).append(example)
    by_source["social (tweets + brand)"] = [e for e in examples if e.source in ("tweets", "brand")]
    results = {}
    for source, group in by_source.items():
        truth = [e.label for e in group]
        predicted = [p.label for p in model.predict([e.text for e in group])]
        model_report: ClassificationReport = classification_report(truth, predicted, LABELS)
        vader_report = classification_report(truth, vader_baseline([e.text for e in group]), LABELS)
        results[source] = {"model": model_report.as_dict(), "vader": vader_report.as_dict()}
    return results


def train(
    store: ArtifactStore,
    embedder: SentenceEmbedder,
    vader_directory: Path,
    seed: int = 13,
    make_current: bool = True,
    vader_sources: Sequence[str] = tuple(VADER_SOURCES),
) -> tuple[ModelVersion, dict[str, dict]]:
    """`vader_sources` narrows the rated data (tests train on tweets only, in seconds)."""
    examples = read_vader(vader_directory, seed, vader_sources) + read_brand_examples()
    training = [e for e in examples if e.split == "train"]
    held_out = [e for e in examples if e.split == "test"]
    rng = random.Random(seed)
    calibration = set(rng.sample(range(len(training)), k=len(training) // 10))
    fit = [e for i, e in enumerate(training) if i not in calibration]
    validation = [e for i, e in enumerate(training) if i in calibration]
    def featurise(group: list[Example]) -> np.ndarray:
        texts = [e.text for e in group]
        return features(embedder.encode(texts), texts)

    head = EmbeddingClassifier.fit(
        featurise(fit),
        [e.label for e in fit],
        list(LABELS),
        HeadConfig(seed=seed, epochs=25),
        validation=(featurise(validation), [e.label for e in validation]),
        sample_weights=np.array([BRAND_WEIGHT if e.source == "brand" else 1.0 for e in fit]),
    )
    results = evaluate(SentimentModel(embedder, head, "candidate"), held_out)
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.source}\t{example.label}\t{example.text}\n".encode())
    version = store.save(
        MODEL_KIND,
        head.save,
        {
            "embedding_model": embedder.version,
            "training_data_sha256": digest.hexdigest(),
            "seed": seed,
            "vader_sources": list(vader_sources),
            "examples": {"fit": len(fit), "calibration": len(validation), "held_out": len(held_out)},
            "metrics": {f"{source}_accuracy": r["model"]["accuracy"] for source, r in results.items()},
        },
        make_current=make_current,
    )
    return version, results


def load_sentiment_model(version: ModelVersion, embedder: SentenceEmbedder) -> SentimentModel:
    """The head of `version` on `embedder`; refuses a head trained on another embedding model."""
    trained_with = version.meta.get("embedding_model")
    if trained_with not in (None, embedder.version):
        raise ValueError(f"{MODEL_KIND} {version.version} was trained on {trained_with} embeddings, this one has {embedder.version}")
    return SentimentModel(embedder, EmbeddingClassifier.load(version.path), version.version)


def held_out_evaluator(threads: int = 2, embedder: SentenceEmbedder | None = None) -> Evaluator:
    """The promotion gate's judge: accuracy on the held-out brand examples (no downloaded data
    needed; with the caller's encoder when it has one, so a trainer holds one MiniLM, not two)."""
    embedder = embedder or SentenceEmbedder(threads=threads)
    held_out = [e for e in read_brand_examples() if e.split == "test"]

    def judge(version: ModelVersion) -> dict[str, float]:
        report = evaluate(load_sentiment_model(version, embedder), held_out)["brand"]["model"]
        return {"brand_accuracy": report["accuracy"], "brand_macro_f1": report["macro_f1"]}

    return Evaluator("brand_accuracy", judge, f"held-out brand examples of brand_examples.jsonl ({len(held_out)} messages)")
