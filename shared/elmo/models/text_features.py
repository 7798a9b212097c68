"""Hashed character n-gram features: the surface form the sentence embedding smooths away.

Keywords and their misspellings ("refund", "refnd", "shiping") matter for intents; char 2-4-grams
hashed into a fixed number of buckets (crc32, so the same on every machine and run) and
L2-normalised capture them. No vocabulary to store: the feature is a pure function of the text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

NGRAM_SIZES = (2, 3, 4)
_SPACES = re.compile(r"\s+")


def char_ngram_features(texts: Sequence[str], buckets: int = 4096) -> np.ndarray:
    features = np.zeros((len(texts), buckets), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f" {_SPACES.sub(' ', text.lower()).strip()} "
        for size in NGRAM_SIZES:
            for start in range(len(padded) - size + 1):
                features[row, zlib.crc32(padded[start : start + size].encode()) % buckets] += 1.0
        norm = float(np.linalg.norm(features[row]))
        if norm:
            features[row] /= norm
    return features
