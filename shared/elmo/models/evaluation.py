"""Classification metrics: accuracy, per-class and macro F1, confusion matrix (plain numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationReport:
    labels: list[str]
    accuracy: float
    macro_f1: float
    f1: dict[str, float]
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    support: int

    def as_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "support": self.support,
            "f1": {k: round(v, 4) for k, v in self.f1.items()},
            "labels": self.labels,
            "confusion": self.confusion,
        }


def classification_report(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> ClassificationReport:
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    f1 = {}
    for label, i in index.items():
        true_positive = confusion[i, i]
        precision = true_positive / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = true_positive / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1[label] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    present = [label for label, i in index.items() if confusion[i, :].sum()]
    return ClassificationReport(
        labels=list(labels),
        accuracy=float(np.trace(confusion) / max(1, confusion.sum())),
        macro_f1=float(np.mean([f1[label] for label in present])) if present else 0.0,
        f1=f1,
        confusion=confusion.tolist(),
        support=int(confusion.sum()),
    )
