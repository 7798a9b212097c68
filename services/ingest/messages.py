"""What a webhook carries once read: platform messages to publish, and events to ignore.

Each platform module (`meta`, `whatsapp`, `telegram`) turns a parsed body into a `Parsed`: the
customer messages (text, or a reference to voice media still to be fetched) and a count of what
was deliberately ignored (echoes, receipts, statuses, other event kinds). Ids become contract ids
here: the conversation id is stable per (channel, page/number/bot, sender), and the event id is a
function of the platform's message id, so a platform retry yields the same event id and the chain
recognises a duplicate even if the dedupe key was lost.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from elmo.contracts.events import ID_PATTERN, BlobAudio, Channel, InboundMessage, InlineAudio

_ID = re.compile(ID_PATTERN)
EVENT_ID_NAMESPACE = uuid.UUID("0b6d3f0c-6f2e-4a51-9d0a-5e2f4c1b7a90")
CHANNEL_PREFIX = {
    Channel.MESSENGER: "fb",
    Channel.INSTAGRAM: "ig",
    Channel.WHATSAPP: "wa",
    Channel.TELEGRAM: "tg",
    Channel.WEB: "web",
    Channel.OTHER: "other",
}
MediaKind = Literal["graph_media_id", "attachment_url", "telegram_file_id"]


@dataclass(frozen=True)
class MediaRef:
    """Voice media a message points at, to fetch before publishing."""

    kind: MediaKind
    reference: str  # a Graph media id, an attachment URL or a Telegram file id
    declared_mime_type: str | None = None
    declared_size: int | None = None


@dataclass(frozen=True)
class PlatformMessage:
    channel: Channel
    account_id: str  # page id, Instagram account id, WhatsApp phone number id or Telegram bot id
    sender_id: str  # PSID / IGSID, wa_id, Telegram from.id
    message_id: str  # mid, wamid or update_id
    created_at: datetime | None
    text: str | None = None
    media: MediaRef | None = None
    locale: str | None = None

    @property
    def event_id(self) -> str:
        return uuid.uuid5(EVENT_ID_NAMESPACE, f"{self.channel.value}/{self.account_id}/{self.message_id}").hex

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.channel, self.account_id, self.sender_id)

    def to_event(self, audio: InlineAudio | BlobAudio | None = None) -> InboundMessage:
        """The contract event; raises pydantic's ValidationError when the platform data cannot be one."""
        return InboundMessage(
            event_id=self.event_id,
            conversation_id=self.conversation_id,
            user_id=self.sender_id,
            channel=self.channel,
            created_at=self.created_at or datetime.now(UTC),
            text=self.text if audio is None else None,
            audio=audio,
            locale=self.locale,
            platform_message_id=self.message_id,
        )


@dataclass
class Parsed:
    messages: list[PlatformMessage] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def ignore(self, kind: str) -> None:
        self.ignored[kind] += 1


def conversation_id(channel: Channel, account_id: str, sender_id: str) -> str:
    """`<fb|ig|wa|tg>-<account>-<sender>`, or a hash of them when that would not be a valid id."""
    readable = f"{CHANNEL_PREFIX[channel]}-{account_id}-{sender_id}"
    if _ID.fullmatch(readable):
        return readable
    digest = hashlib.sha256(f"{account_id}\x00{sender_id}".encode()).hexdigest()[:40]
    return f"{CHANNEL_PREFIX[channel]}-h{digest}"


def is_valid_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


# --- tolerant readers of untrusted JSON --------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_id(value: Any) -> str | None:
    """A platform id as text: strings as they are, integers in decimal; anything else is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def timestamp(value: Any, *, milliseconds: bool = False) -> datetime | None:
    """A platform timestamp (seconds, or milliseconds for Messenger; number or numeric string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000 if milliseconds else value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
