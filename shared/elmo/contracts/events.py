"""Event contracts: one pydantic model per hop of the chain.

Every event carries its lineage (`parent_event_id`, `origin_event_id`, `origin_created_at`) so any
record can be traced back to the customer message that caused it, and end-to-end latency is
`now - origin_created_at` at any hop. The Kafka key of every event is its `conversation_id`, so one
conversation stays in one partition and in order.

Compatibility rule: within a `schema_version`, changes are additive and optional (readers ignore
fields they do not know). A breaking change bumps the version; a service rejects versions it does
not support to its dead-letter topic instead of guessing.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

INLINE_AUDIO_MAX_BYTES = 512 * 1024
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"

E = TypeVar("E", bound="Event")


def new_event_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


class Channel(str, Enum):
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    WEB = "web"
    OTHER = "other"


class Contract(BaseModel):
    """Base of every model in the contracts: tolerant of unknown fields, strict about known ones."""

    model_config = ConfigDict(extra="ignore", use_enum_values=False, frozen=False)


class Event(Contract):
    SCHEMA_VERSION: ClassVar[int] = 1
    SUPPORTED_SCHEMA_VERSIONS: ClassVar[frozenset[int]] = frozenset({1})

    event_type: str
    schema_version: int = 1
    event_id: str = Field(default_factory=new_event_id, pattern=ID_PATTERN)
    conversation_id: str = Field(pattern=ID_PATTERN)
    user_id: str = Field(pattern=ID_PATTERN)
    channel: Channel
    created_at: datetime = Field(default_factory=utc_now)
    parent_event_id: str | None = Field(default=None, description="The event this one was derived from.")
    origin_event_id: str = Field(default="", description="The inbound event that started this chain.")
    origin_created_at: datetime | None = Field(default=None, description="When the inbound event was created.")

    @field_validator("created_at", "origin_created_at")
    @classmethod
    def _timezone_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _origin_defaults_to_self(self) -> Self:
        # An event with no origin is itself the origin (an inbound message from an ingestor).
        if not self.origin_event_id:
            self.origin_event_id = self.event_id
        if self.origin_created_at is None:
            self.origin_created_at = self.created_at
        return self

    @property
    def key(self) -> bytes:
        """The Kafka key: one conversation, one partition, in order."""
        return self.conversation_id.encode()

    def derive(self, event_class: type[E], **fields: Any) -> E:
        """A new event caused by this one: same conversation, lineage carried forward.

        Fields this event has in common with `event_class` (other than identity and lineage) are
        carried over, so the chain's context flows forward without calling back upstream.
        """
        identity = {"event_type", "schema_version", "event_id", "created_at", "parent_event_id"}
        carried = {
            name: getattr(self, name)
            for name in event_class.model_fields
            if name in type(self).model_fields and name not in identity
        }
        carried.update(fields)
        carried["parent_event_id"] = self.event_id
        return event_class(**carried)

    def latency_seconds(self, now: datetime | None = None) -> float:
        """Seconds since the inbound event that started this chain."""
        origin = self.origin_created_at or self.created_at
        return ((now or utc_now()) - origin).total_seconds()


# --- inbound ---------------------------------------------------------------------------------


class InlineAudio(Contract):
    data_b64: str = Field(description=f"Base64 audio bytes, at most {INLINE_AUDIO_MAX_BYTES} bytes decoded.")
    mime_type: str = Field(examples=["audio/ogg", "audio/mpeg", "audio/mp4", "audio/wav", "audio/L16;rate=16000"])

    @field_validator("data_b64")
    @classmethod
    def _valid_and_small(cls, value: str) -> str:
        # Decoded length from the base64 length, then a real decode to reject garbage early.
        if len(value) * 3 // 4 > INLINE_AUDIO_MAX_BYTES + 3:
            raise ValueError(f"inline audio is larger than {INLINE_AUDIO_MAX_BYTES} bytes; use a blob reference")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"data_b64 is not valid base64: {error}") from error
        if not decoded:
            raise ValueError("inline audio is empty")
        return value

    def data(self) -> bytes:
        return base64.b64decode(self.data_b64)


class BlobAudio(Contract):
    uri: str = Field(description="Where the audio is stored: file:///..., s3://..., https://...")
    mime_type: str
    size_bytes: int | None = Field(default=None, ge=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class InboundMessage(Event):
    """What a webhook ingestor publishes to `elmo.inbound`: plain JSON any Kafka client can produce."""

    event_type: Literal["inbound_message"] = "inbound_message"
    text: str | None = Field(default=None, max_length=4096)
    audio: InlineAudio | BlobAudio | None = None
    locale: str | None = Field(default=None, examples=["en-US"])
    platform_message_id: str | None = Field(default=None, description="wamid, mid or update_id: the platform's id.")

    @model_validator(mode="after")
    def _text_or_audio(self) -> Self:
        if (self.text is None) == (self.audio is None):
            raise ValueError("an inbound message carries exactly one of 'text' or 'audio'")
        if self.text is not None and not self.text.strip():
            raise ValueError("text is empty")
        return self


# --- understanding chain ---------------------------------------------------------------------


class Segment(Contract):
    start_s: float
    end_s: float
    text: str


class Utterance(Event):
    """The words of one customer message, transcribed (voice) or passed through (text)."""

    event_type: Literal["utterance"] = "utterance"
    text: str
    source: Literal["text", "voice"]
    language: str | None = None
    duration_s: float | None = None
    segments: list[Segment] = Field(default_factory=list)
    transcription_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    asr_model: str | None = None


class Entity(Contract):
    type: str
    value: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    normalized: str | None = None


class Intent(Contract):
    name: str
    confidence: float = Field(ge=0.0, le=1.0)


class DialogueContext(Contract):
    """What the conversation has established so far, as the nlu stage sees it."""

    turn: int = 0
    slots: dict[str, str] = Field(default_factory=dict)
    product_in_focus: str | None = None
    awaiting_slot: str | None = None


class Understanding(Utterance):
    event_type: Literal["understanding"] = "understanding"
    intent: Intent
    entities: list[Entity] = Field(default_factory=list)
    context: DialogueContext = Field(default_factory=DialogueContext)
    embedding_b64: str | None = Field(
        default=None, description="Sentence embedding (little-endian float32, base64), reusable downstream."
    )
    embedding_model: str | None = Field(default=None, description="Which model made `embedding_b64`.")
    nlu_model_version: str | None = None


class Sentiment(Contract):
    label: Literal["negative", "neutral", "positive"]
    score: float = Field(ge=-1.0, le=1.0)
    model_version: str | None = None


class SentimentScored(Understanding):
    event_type: Literal["sentiment_scored"] = "sentiment_scored"
    sentiment: Sentiment


class Recommendation(Contract):
    item_id: str
    name: str
    score: float
    reason: str = Field(description="Why, in words a person can read.")
    tracking_id: str = Field(default_factory=new_event_id, description="Referred to by feedback events.")
    price: float | None = None
    url: str | None = None


class Recommended(SentimentScored):
    event_type: Literal["recommended"] = "recommended"
    recommendations: list[Recommendation] = Field(default_factory=list)
    recommender_model_version: str | None = None


class GroundingFact(Contract):
    source: Literal["catalog", "knowledge_base", "recommendation", "brand_profile", "conversation"]
    reference: str
    fact: str


class Reply(Event):
    """What the chain answers; `elmo.replies` is consumed by delivery and any outside client."""

    event_type: Literal["reply"] = "reply"
    text: str
    strategy: str
    variant: str | None = None
    recommendations: list[Recommendation] = Field(default_factory=list)
    handoff: bool = False
    grounding: list[GroundingFact] = Field(default_factory=list)
    in_reply_to_text: str | None = Field(default=None, description="What the customer said (the transcript of a voice note).")
    source: Literal["text", "voice"] | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    entities: list[Entity] = Field(default_factory=list)
    sentiment_label: str | None = None
    sentiment_score: float | None = None
    awaiting_slot: str | None = Field(default=None, description="The slot the reply asks the customer for, if any.")


# --- learning loop ---------------------------------------------------------------------------


class FeedbackKind(str, Enum):
    RECOMMENDATION_VIEWED = "recommendation_viewed"
    RECOMMENDATION_CLICKED = "recommendation_clicked"
    RECOMMENDATION_PURCHASED = "recommendation_purchased"
    REPLY_RATED = "reply_rated"
    HANDOFF_OUTCOME = "handoff_outcome"
    INTENT_CORRECTED = "intent_corrected"
    SENTIMENT_CORRECTED = "sentiment_corrected"


class Feedback(Event):
    event_type: Literal["feedback"] = "feedback"
    kind: FeedbackKind
    reply_event_id: str | None = None
    tracking_id: str | None = None
    item_id: str | None = None
    rating: Literal[-1, 1] | None = None
    corrected_label: str | None = None
    outcome: str | None = None
    agent_id: str | None = None


class ModelUpdate(Contract):
    """A model version promoted or rolled back; keyed by `model_kind` on a compacted topic."""

    SCHEMA_VERSION: ClassVar[int] = 1
    SUPPORTED_SCHEMA_VERSIONS: ClassVar[frozenset[int]] = frozenset({1})

    event_type: Literal["model_update"] = "model_update"
    schema_version: int = 1
    event_id: str = Field(default_factory=new_event_id)
    created_at: datetime = Field(default_factory=utc_now)
    model_kind: str
    version: str
    action: Literal["promote", "rollback"] = "promote"
    parent_version: str | None = None
    artifact_uri: str
    metrics: dict[str, float] = Field(default_factory=dict)


class DeadLetter(Contract):
    """Body of a dead-letter record. The original value is kept so the record can be replayed."""

    SCHEMA_VERSION: ClassVar[int] = 1
    SUPPORTED_SCHEMA_VERSIONS: ClassVar[frozenset[int]] = frozenset({1})

    event_type: Literal["dead_letter"] = "dead_letter"
    schema_version: int = 1
    event_id: str = Field(default_factory=new_event_id)
    created_at: datetime = Field(default_factory=utc_now)
    service: str
    reason: Literal["malformed", "too_large", "unsupported_schema_version", "invalid", "rejected", "processing_failed"]
    error_class: str
    error_message: str
    original_topic: str
    original_partition: int
    original_offset: int
    original_key: str | None = None
    original_value: str = Field(description="The original value: UTF-8 text, or base64 when not text.")
    original_value_encoding: Literal["utf-8", "base64"] = "utf-8"
    original_value_bytes: int = Field(0, description="Size of the original value in bytes, before any truncation.")
    original_value_truncated: bool = Field(
        False, description="True when only the first bytes of the value were kept (a dead letter has a size budget)."
    )
    original_event_id: str | None = None
    attempts: int = 1


EVENT_TYPES: tuple[type[Contract], ...] = (
    InboundMessage,
    Utterance,
    Understanding,
    SentimentScored,
    Recommended,
    Reply,
    Feedback,
    ModelUpdate,
    DeadLetter,
)
