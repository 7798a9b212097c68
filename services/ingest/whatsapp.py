"""WhatsApp Cloud API webhooks -> messages.

Text and voice (`audio`, fetched through the Graph API by media id) become messages; `statuses`
(sent, delivered, read, failed), errors and other message types (images, stickers, reactions,
buttons) are ignored.
"""

from __future__ import annotations

from typing import Any

from elmo.contracts.events import Channel
from services.ingest.messages import MediaRef, Parsed, PlatformMessage, as_dict, as_id, as_list, as_text, timestamp


def parse(body: Any) -> Parsed:
    parsed = Parsed()
    document = as_dict(body)
    if document.get("object") != "whatsapp_business_account":
        parsed.ignore("unknown_object")
        return parsed
    for entry in map(as_dict, as_list(document.get("entry"))):
        for change in map(as_dict, as_list(entry.get("changes"))):
            value = as_dict(change.get("value"))
            if change.get("field") != "messages":
                parsed.ignore("non_message")
                continue
            for _ in as_list(value.get("statuses")):
                parsed.ignore("status")
            for _ in as_list(value.get("errors")):
                parsed.ignore("error")
            phone_number_id = as_id(as_dict(value.get("metadata")).get("phone_number_id"))
            for message in map(as_dict, as_list(value.get("messages"))):
                _read_message(phone_number_id, message, parsed)
    return parsed


def _read_message(phone_number_id: str | None, message: dict[str, Any], parsed: Parsed) -> None:
    sender, wamid = as_id(message.get("from")), as_id(message.get("id"))
    if phone_number_id is None or sender is None or wamid is None:
        parsed.ignore("invalid")
        return
    common = {
        "channel": Channel.WHATSAPP,
        "account_id": phone_number_id,
        "sender_id": sender,
        "message_id": wamid,
        "created_at": timestamp(message.get("timestamp")),
    }
    kind = message.get("type")
    if kind == "text" and (text := as_text(as_dict(message.get("text")).get("body"))) is not None:
        parsed.messages.append(PlatformMessage(**common, text=text))
    elif kind == "audio" and (media_id := as_id(as_dict(message.get("audio")).get("id"))) is not None:
        declared = as_text(as_dict(message.get("audio")).get("mime_type"))
        parsed.messages.append(PlatformMessage(**common, media=MediaRef("graph_media_id", media_id, declared)))
    else:
        parsed.ignore("unsupported_type")
