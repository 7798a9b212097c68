"""Telegram Bot API updates -> messages.

A private chat's text or voice (`voice`, or an `audio` file, fetched with getFile) becomes a
message; edited messages, channel posts, callback queries, group chats and other update kinds are
ignored. The sender's id is also the chat id delivery answers to, which holds in private chats only.
"""

from __future__ import annotations

from typing import Any

from elmo.contracts.events import Channel
from services.ingest.messages import MediaRef, Parsed, PlatformMessage, as_dict, as_id, as_text, timestamp

OTHER_UPDATES = ("edited_message", "channel_post", "edited_channel_post", "callback_query", "inline_query", "my_chat_member")


def parse(body: Any, bot_id: str) -> Parsed:
    parsed = Parsed()
    update = as_dict(body)
    message = update.get("message")
    if not isinstance(message, dict):
        parsed.ignore(next((name for name in OTHER_UPDATES if name in update), "non_message"))
        return parsed
    if as_dict(message.get("chat")).get("type") != "private":
        parsed.ignore("not_private_chat")
        return parsed
    sender = as_dict(message.get("from"))
    if sender.get("is_bot") is True:
        parsed.ignore("echo")
        return parsed
    sender_id, update_id = as_id(sender.get("id")), as_id(update.get("update_id"))
    if sender_id is None or update_id is None:
        parsed.ignore("invalid")
        return parsed
    language = sender.get("language_code")
    common = {
        "channel": Channel.TELEGRAM,
        "account_id": bot_id,
        "sender_id": sender_id,
        "message_id": update_id,
        "created_at": timestamp(message.get("date")),
        "locale": language if isinstance(language, str) and 0 < len(language) <= 35 else None,
    }
    if (text := as_text(message.get("text"))) is not None:
        parsed.messages.append(PlatformMessage(**common, text=text))
        return parsed
    for kind in ("voice", "audio"):
        media = as_dict(message.get(kind))
        if (file_id := as_text(media.get("file_id"))) is not None:
            size = media.get("file_size")
            declared_size = size if isinstance(size, int) and not isinstance(size, bool) else None
            ref = MediaRef("telegram_file_id", file_id, as_text(media.get("mime_type")), declared_size)
            parsed.messages.append(PlatformMessage(**common, media=ref))
            return parsed
    parsed.ignore("unsupported_type")
    return parsed
