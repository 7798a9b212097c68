"""asr: voice notes to text (faster-whisper), on elmo.voice-notes -> elmo.utterances; intake routes them here."""
