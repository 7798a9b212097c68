"""intake: the first hop. Text goes straight to elmo.utterances; voice notes go to asr on elmo.voice-notes."""
