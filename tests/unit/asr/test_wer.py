"""WER normalisation: Whisper's digits and punctuation against spelled-out reference transcripts."""

from __future__ import annotations

import pytest

from services.asr.wer import corpus_wer, normalize, number_words, wer


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Go forward 10 meters.", "go forward ten meters"),
        ("<s> ten of clubs </s>", "s ten of clubs s"),
        ("8 of spades, 4 of clubs, 7 of hearts.", "eight of spades four of clubs seven of hearts"),
        ("And Mr. John Dashwood", "and mister john dashwood"),
        ("He was not an ill-disposed young man.", "he was not an ill disposed young man"),
        ("It's 1,250 dollars", "its one thousand two hundred fifty dollars"),
        ("the 21st and 3rd of 2.5", "the twenty first and third of two point five"),
    ],
)
def test_normalisation(text: str, words: str) -> None:
    assert normalize(text) == words.split()


def test_number_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(40) == "forty"
    assert number_words(115) == "one hundred fifteen"
    assert number_words(2_000_019) == "two million nineteen"


def test_wer_counts_substitutions_deletions_and_insertions() -> None:
    assert wer("go forward ten meters", "Go forward 10 meters.") == 0.0
    assert wer("go forward ten meters", "go forward two meters") == 0.25
    assert wer("go forward ten meters", "go ten meters") == 0.25
    assert wer("go forward ten meters", "go go forward ten meters now") == 0.5
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0


def test_corpus_wer_weighs_clips_by_their_length() -> None:
    pairs = [("one two three four five six seven eight", "one two three four five six seven eight"), ("yes", "no")]
    assert corpus_wer(pairs) == pytest.approx(1 / 9)
