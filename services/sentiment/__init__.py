"""The sentiment service: a label and a score for each understood utterance."""
