"""The topic registry: every Kafka topic Elmo uses, in one place.

Services, `elmo topics create`, the Kubernetes manifests and the docs all read this registry, so a
topic's name, partition count and retention never drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DAY_MS = 24 * 60 * 60 * 1000

# Partitions bound how far a stage scales out (KEDA caps replicas at this number) and how many
# conversations are processed side by side; records of one conversation share a partition.
DEFAULT_PARTITIONS = 6


class CleanupPolicy(str, Enum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE

    @property
    def config(self) -> dict[str, str]:
        """Topic-level configs as Kafka expects them."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy.value,
        }


# Interaction topics keep 30 days: the feedback-trainer replays them to refit models.
INTERACTION_RETENTION_MS = 30 * DAY_MS

INBOUND = Topic(
    "elmo.inbound",
    "Customer messages (text or voice) as published by webhook ingestors.",
    retention_ms=INTERACTION_RETENTION_MS,
)
VOICE_NOTES = Topic(
    "elmo.voice-notes",
    "Inbound messages waiting for asr: voice notes, and text queued behind a voice note of the same "
    "conversation so the conversation keeps its order. Routed by intake.",
)
UTTERANCES = Topic(
    "elmo.utterances",
    "Text of each inbound message: transcribed by asr, or passed through when it was text.",
    retention_ms=INTERACTION_RETENTION_MS,
)
UNDERSTANDINGS = Topic(
    "elmo.understandings",
    "Utterances with intent, entities and dialogue context from nlu.",
    retention_ms=INTERACTION_RETENTION_MS,
)
SENTIMENTS = Topic(
    "elmo.sentiments",
    "Understood utterances with a sentiment label and score.",
    retention_ms=INTERACTION_RETENTION_MS,
)
RECOMMENDATIONS = Topic(
    "elmo.recommendations",
    "Scored utterances with the recommender's suggestions, each with a reason and tracking id.",
    retention_ms=INTERACTION_RETENTION_MS,
)
REPLIES = Topic(
    "elmo.replies",
    "Replies to send to the customer, with the grounding facts and recommendations used.",
    retention_ms=INTERACTION_RETENTION_MS,
)
FEEDBACK = Topic(
    "elmo.feedback",
    "Reactions: clicks, purchases, ratings, handoff outcomes and agents' corrections.",
    retention_ms=90 * DAY_MS,
)
MODEL_UPDATES = Topic(
    "elmo.model-updates",
    "Promotions and rollbacks of model versions, keyed by model kind; the latest per kind is kept.",
    partitions=1,
    retention_ms=-1,
    cleanup_policy=CleanupPolicy.COMPACT,
)

CHAIN_TOPICS: tuple[Topic, ...] = (
    INBOUND,
    VOICE_NOTES,
    UTTERANCES,
    UNDERSTANDINGS,
    SENTIMENTS,
    RECOMMENDATIONS,
    REPLIES,
    FEEDBACK,
    MODEL_UPDATES,
)

# Every service that consumes gets a dead-letter topic of its own, so one service's bad input
# can be inspected and replayed without touching another's.
SERVICES: tuple[str, ...] = (
    "intake",
    "asr",
    "nlu",
    "sentiment",
    "recommender",
    "generator",
    "feedback-trainer",
    "delivery",
)

# Services at the edge that consume no topic (so have no dead-letter topic): webhooks in.
EDGE_SERVICES: tuple[str, ...] = ("ingest",)


def dead_letter_topic(service: str) -> Topic:
    return Topic(
        f"elmo.dlq.{service}",
        f"Records the {service} service could not process, with the reason in headers and body.",
        retention_ms=14 * DAY_MS,
    )


def all_topics(extra_services: tuple[str, ...] = ()) -> tuple[Topic, ...]:
    """Every topic of the registry; `extra_services` adds dead-letter topics (tests, plug-ins)."""
    services = SERVICES + tuple(s for s in extra_services if s not in SERVICES)
    return CHAIN_TOPICS + tuple(dead_letter_topic(s) for s in services)


def by_name(name: str) -> Topic:
    for topic in all_topics():
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {', '.join(t.name for t in all_topics())}")
