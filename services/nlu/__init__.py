"""The nlu service: intent, entities and dialogue context for each utterance."""
