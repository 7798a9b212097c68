"""The chain as data: which service reads which topic and event type, and what it writes.

The AsyncAPI document, the docs' topic table and the deployment checks are generated from this,
so the written description of the chain cannot drift from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from elmo.contracts import events, topics
from elmo.contracts.events import Contract
from elmo.contracts.topics import Topic


@dataclass(frozen=True)
class Hop:
    service: str
    consumes: Topic
    input_type: type[Contract]
    emits: Topic
    output_type: type[Contract]
    summary: str


CHAIN: tuple[Hop, ...] = (
    Hop("intake", topics.INBOUND, events.InboundMessage, topics.UTTERANCES, events.Utterance,
        "Passes text messages straight on; routes voice notes to asr (and text queued behind them)."),
    Hop("intake", topics.INBOUND, events.InboundMessage, topics.VOICE_NOTES, events.InboundMessage,
        "Voice notes, and text of a conversation with a voice note still in asr, keep their order."),
    Hop("asr", topics.VOICE_NOTES, events.InboundMessage, topics.UTTERANCES, events.Utterance,
        "Transcribes voice notes; passes the text queued behind them through untouched."),
    Hop("nlu", topics.UTTERANCES, events.Utterance, topics.UNDERSTANDINGS, events.Understanding,
        "Intent, entities and dialogue context."),
    Hop("sentiment", topics.UNDERSTANDINGS, events.Understanding, topics.SENTIMENTS, events.SentimentScored,
        "Sentiment label and score."),
    Hop("recommender", topics.SENTIMENTS, events.SentimentScored, topics.RECOMMENDATIONS, events.Recommended,
        "Personalised, sentiment-aware product suggestions."),
    Hop("generator", topics.RECOMMENDATIONS, events.Recommended, topics.REPLIES, events.Reply,
        "Grounded reply from the dialogue policy, catalog and knowledge base."),
    Hop("feedback-trainer", topics.FEEDBACK, events.Feedback, topics.MODEL_UPDATES, events.ModelUpdate,
        "Learns from reactions and publishes new model versions."),
    Hop("delivery", topics.REPLIES, events.Reply, topics.FEEDBACK, events.Feedback,
        "Sends replies through each platform's send API; records the recommendations shown."),
)
