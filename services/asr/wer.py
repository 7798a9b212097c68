"""Word error rate after normalisation, so "Go forward 10 meters." matches "go forward ten meters".

Normalisation: lower case; numbers written as words ("10" -> "ten", "21st" -> "twenty first");
a few spoken abbreviations expanded ("mr" -> "mister"); hyphens split words; other punctuation
and apostrophes dropped. Used by the tests, the benchmark and `elmo eval asr`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"), (100, "hundred"))
ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth", "twelve": "twelfth"
}  # fmt: skip
# Whisper writes these as abbreviations; reference transcripts spell them out.
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "vs": "versus"}

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?")


def number_words(number: int) -> str:
    if number < 20:
        return ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return TENS[tens] + (f" {ONES[ones]}" if ones else "")
    for scale, name in SCALES:
        if number >= scale:
            high, rest = divmod(number, scale)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _spoken_number(match: re.Match[str]) -> str:
    token = match.group(0).replace(",", "")
    ordinal = token[-2:] in ("st", "nd", "rd", "th")
    digits = token[:-2] if ordinal else token
    whole, _, fraction = digits.partition(".")
    words = number_words(int(whole))
    if fraction:
        words += " point " + " ".join(ONES[int(d)] for d in fraction)
    if ordinal:
        *head, last = words.split()
        last = ORDINALS.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
        words = " ".join([*head, last])
    return f" {words} "


def normalize(text: str) -> list[str]:
    """The words of `text`, normalised for comparison."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = NUMBER.sub(_spoken_number, text)
    text = re.sub(r"[-‐‑–—/]", " ", text)
    text = re.sub(r"['’`]", "", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return [ABBREVIATIONS.get(word, word) for word in text.split()]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, words in the reference), after normalisation."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    errors, words = word_errors(reference, hypothesis)
    return errors / words if words else float(errors > 0)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """All errors over all reference words, so long clips weigh more than short ones."""
    errors = words = 0
    for reference, hypothesis in pairs:
        e, w = word_errors(reference, hypothesis)
        errors, words = errors + e, words + w
    return errors / words if words else 0.0
