"""asr: voice notes to text (faster-whisper), text messages passed through, on elmo.inbound -> elmo.utterances."""
