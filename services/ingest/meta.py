"""Messenger and Instagram webhooks (one envelope, `object` = `page` or `instagram`) -> messages.

Text and voice (an `audio` attachment, fetched from its URL) become messages; echoes of the page's
own sends, delivery and read receipts, postbacks, reactions and any other event are ignored.
"""

from __future__ import annotations

from typing import Any

from elmo.contracts.events import Channel
from services.ingest.messages import MediaRef, Parsed, PlatformMessage, as_dict, as_id, as_list, as_text, timestamp

CHANNEL_BY_OBJECT = {"page": Channel.MESSENGER, "instagram": Channel.INSTAGRAM}
# Messaging events other than `message`, named as the metric's `kind` label.
OTHER_EVENTS = ("delivery", "read", "postback", "reaction", "optin", "referral", "message_edit", "account_linking")


def parse(body: Any) -> Parsed:
    parsed = Parsed()
    document = as_dict(body)
    kind = document.get("object")
    channel = CHANNEL_BY_OBJECT.get(kind) if isinstance(kind, str) else None
    if channel is None:
        parsed.ignore("unknown_object")
        return parsed
    for entry in map(as_dict, as_list(document.get("entry"))):
        if entry.get("changes") is not None or entry.get("standby") is not None:
            parsed.ignore("non_message")  # comments, mentions, handover standby: not ours to answer
        for event in map(as_dict, as_list(entry.get("messaging"))):
            _read_event(channel, entry, event, parsed)
    return parsed


def _read_event(channel: Channel, entry: dict[str, Any], event: dict[str, Any], parsed: Parsed) -> None:
    message = event.get("message")
    if not isinstance(message, dict):
        parsed.ignore(next((name for name in OTHER_EVENTS if name in event), "non_message"))
        return
    if message.get("is_echo"):
        parsed.ignore("echo")
        return
    if message.get("is_deleted"):
        parsed.ignore("deleted")
        return
    account = as_id(entry.get("id")) or as_id(as_dict(event.get("recipient")).get("id"))
    sender = as_id(as_dict(event.get("sender")).get("id"))
    mid = as_id(message.get("mid"))
    if account is None or sender is None or mid is None:
        parsed.ignore("invalid")
        return
    common = {
        "channel": channel,
        "account_id": account,
        "sender_id": sender,
        "message_id": mid,
        "created_at": timestamp(event.get("timestamp"), milliseconds=True),
    }
    if (text := as_text(message.get("text"))) is not None:
        parsed.messages.append(PlatformMessage(**common, text=text))
        return
    for attachment in map(as_dict, as_list(message.get("attachments"))):
        url = as_text(as_dict(attachment.get("payload")).get("url"))
        if attachment.get("type") == "audio" and url is not None:
            parsed.messages.append(PlatformMessage(**common, media=MediaRef("attachment_url", url)))
            return
    parsed.ignore("unsupported_type")
