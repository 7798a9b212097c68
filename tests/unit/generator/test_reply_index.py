"""What the generator writes to the reply index: enough to credit a reaction, and what nlu and
sentiment made of the message (the feedback-trainer's confident weak labels need it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from elmo.dialogue import BotState
from elmo.reply_bandit import ReplyLearningStore, ReplyRecord
from services.generator.core import ReplyGenerator
from services.generator.policy import Brand
from tests.unit.generator.conftest import turn


class RecordingPipeline:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.hashes[key] = mapping

    def expire(self, key: str, seconds: int) -> None:
        pass


class DialogueInMemory:
    """Bot states in memory; the batch's other writes land on one recording pipeline."""

    def __init__(self) -> None:
        self.pipe = RecordingPipeline()

    async def load_bot_states(self, conversation_ids: Iterable[str]) -> dict[str, BotState]:
        return {c: BotState() for c in conversation_ids}

    async def save_bot_states(self, states: dict[str, BotState], also: Callable[[RecordingPipeline], None] | None = None) -> None:
        if also is not None:
            also(self.pipe)


class NoScripts:
    def register_script(self, script: str) -> None:
        return None


async def test_the_index_entry_carries_the_intent_confidence_and_the_sentiment(brand: Brand) -> None:
    dialogue = DialogueInMemory()
    index = ReplyLearningStore(NoScripts(), prefix="test")  # type: ignore[arg-type]
    generator = ReplyGenerator(brand, dialogue, reply_index=index)  # type: ignore[arg-type]
    (reply,) = await generator.reply_batch([turn("complaint", "my parcel is late again", sentiment="negative")])
    fields = dialogue.pipe.hashes[index.reply_key(reply.event_id)]
    assert (fields["intent"], fields["intent_confidence"], fields["sentiment"], fields["sentiment_score"]) == ("complaint", "0.9", "negative", "-0.7")
    record = ReplyRecord.from_fields(reply.event_id, fields)
    assert (record.text, record.intent_confidence, record.sentiment_label, record.sentiment_score) == ("my parcel is late again", 0.9, "negative", -0.7)
