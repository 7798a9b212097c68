"""Each platform's webhook payloads (the shapes of landscape.md) -> contract messages, or ignored."""

import base64
import json
import re
from datetime import UTC, datetime

from elmo.contracts.events import ID_PATTERN, Channel, InlineAudio
from services.ingest import meta, telegram, whatsapp
from services.ingest.messages import MediaRef, PlatformMessage, conversation_id
from tests.unit.ingest.conftest import payload


def read(name: str, **placeholders: str):
    return json.loads(payload(name, **placeholders))


def only_message(parsed) -> PlatformMessage:
    assert len(parsed.messages) == 1, parsed
    return parsed.messages[0]


def test_messenger_text():
    event = only_message(meta.parse(read("messenger_text"))).to_event()
    assert event.channel is Channel.MESSENGER
    assert event.user_id == "2222"
    assert event.conversation_id == "fb-1111-2222"
    assert event.platform_message_id == "mid.1457764197618:41d102a3e1ae206a38"
    assert event.text == "hello, world!" and event.audio is None
    assert event.created_at == datetime(2016, 3, 23, 0, 25, 52, 478000, tzinfo=UTC)
    assert event.origin_event_id == event.event_id and re.fullmatch(ID_PATTERN, event.event_id)


def test_instagram_uses_the_same_envelope_on_its_own_channel():
    event = only_message(meta.parse(read("instagram_text"))).to_event()
    assert event.channel is Channel.INSTAGRAM
    assert event.conversation_id == "ig-17841400000000001-9001"
    assert event.user_id == "9001"
    assert event.text == "is the blue one in stock?"


def test_messenger_audio_attachment_is_a_voice_message_to_fetch():
    message = only_message(meta.parse(read("messenger_audio", MEDIA_BASE="https://cdn.fbsbx.com")))
    assert message.media == MediaRef("attachment_url", "https://cdn.fbsbx.com/cdn/messenger-voice")
    assert message.text is None


def test_messenger_echoes_receipts_postbacks_and_images_are_ignored():
    parsed = meta.parse(read("messenger_echo_and_receipts"))
    assert parsed.messages == []
    assert parsed.ignored == {"echo": 1, "delivery": 1, "read": 1, "postback": 1, "unsupported_type": 1}


def test_whatsapp_text():
    event = only_message(whatsapp.parse(read("whatsapp_text"))).to_event()
    assert event.channel is Channel.WHATSAPP
    assert event.user_id == "33612345678"
    assert event.conversation_id == "wa-106540352242922-33612345678"
    assert event.platform_message_id == "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzQUI1"
    assert event.created_at == datetime.fromtimestamp(1603059201, UTC)
    assert event.text == "Hello"


def test_whatsapp_voice_note_refers_to_graph_media():
    message = only_message(whatsapp.parse(read("whatsapp_voice", MEDIA_ID="987654321")))
    assert message.media == MediaRef("graph_media_id", "987654321", "audio/ogg; codecs=opus")
    assert message.conversation_id == "wa-106540352242922-33612345678"


def test_whatsapp_statuses_are_ignored():
    parsed = whatsapp.parse(read("whatsapp_statuses"))
    assert parsed.messages == [] and parsed.ignored == {"status": 3}


def test_telegram_text():
    event = only_message(telegram.parse(read("telegram_text"), bot_id="4242")).to_event()
    assert event.channel is Channel.TELEGRAM
    assert event.user_id == "123"
    assert event.conversation_id == "tg-4242-123"
    assert event.platform_message_id == "100001"
    assert event.created_at == datetime.fromtimestamp(1714121016, UTC)
    assert event.locale == "en"


def test_telegram_voice_refers_to_a_file_id():
    message = only_message(telegram.parse(read("telegram_voice", FILE_ID="AwACAgQ"), bot_id="4242"))
    assert message.media == MediaRef("telegram_file_id", "AwACAgQ", "audio/ogg", 8003)


def test_telegram_edits_and_group_chats_are_ignored():
    assert telegram.parse(read("telegram_edited"), bot_id="4242").ignored == {"edited_message": 1}
    assert telegram.parse(read("telegram_group"), bot_id="4242").ignored == {"not_private_chat": 1}


def test_a_platform_retry_gets_the_same_event_id_and_other_messages_other_ids():
    first = only_message(whatsapp.parse(read("whatsapp_text"))).event_id
    assert first == only_message(whatsapp.parse(read("whatsapp_text"))).event_id
    other = read("whatsapp_text")
    other["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.other"
    assert only_message(whatsapp.parse(other)).event_id != first


def test_conversations_are_per_channel_account_and_sender():
    assert conversation_id(Channel.MESSENGER, "1", "2") != conversation_id(Channel.INSTAGRAM, "1", "2")
    assert conversation_id(Channel.WHATSAPP, "1", "2") != conversation_id(Channel.WHATSAPP, "3", "2")
    # Ids the contract's pattern cannot hold are hashed, stably.
    odd = conversation_id(Channel.TELEGRAM, "bot", "a b/c" * 40)
    assert re.fullmatch(ID_PATTERN, odd) and odd == conversation_id(Channel.TELEGRAM, "bot", "a b/c" * 40)
    assert odd.startswith("tg-h")


def test_wrong_shapes_are_ignored_not_errors():
    for body in (
        None,
        [],
        "x",
        3,
        {"object": ["page"]},
        {"object": "page", "entry": "x"},
        {"object": "page", "entry": [{"messaging": [1, None]}]},
    ):
        assert meta.parse(body).messages == []
    assert whatsapp.parse(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {"messages": [{"type": "text"}]}}]}]}
    ).ignored == {"invalid": 1}
    assert telegram.parse({"update_id": 1, "message": {"chat": {"type": "private"}, "from": {"id": True}, "text": "x"}}, "1").ignored == {
        "invalid": 1
    }
    # An absurd timestamp falls back to the time of arrival instead of failing.
    body = read("telegram_text")
    body["message"]["date"] = 10**30
    assert only_message(telegram.parse(body, "1")).created_at is None


def test_one_whatsapp_webhook_with_several_messages_statuses_and_other_fields():
    parsed = whatsapp.parse(read("whatsapp_mixed"))
    text, voice = parsed.messages
    assert (text.sender_id, text.message_id, text.text, text.media) == ("33612345678", "wamid.mixed.1", "first question", None)
    assert (voice.sender_id, voice.message_id, voice.text) == ("4915112345678", "wamid.mixed.2", None)
    assert voice.media == MediaRef("graph_media_id", "555000111", "audio/ogg; codecs=opus")
    # Each sender is a conversation of its own on the same business number.
    assert (text.conversation_id, voice.conversation_id) == ("wa-106540352242922-33612345678", "wa-106540352242922-4915112345678")
    assert parsed.ignored == {"unsupported_type": 2, "status": 1, "non_message": 1}


def test_meta_batches_several_pages_and_events_in_one_post():
    parsed = meta.parse(read("messenger_batched"))
    assert [(m.account_id, m.sender_id, m.message_id, m.text) for m in parsed.messages] == [
        ("1111", "2222", "mid.batch.1", "one"),
        ("3333", "4444", "mid.batch.2", "two"),
    ]
    assert [m.conversation_id for m in parsed.messages] == ["fb-1111-2222", "fb-3333-4444"]
    assert parsed.ignored == {"reaction": 1, "deleted": 1, "non_message": 1}


def test_instagram_audio_attachment_is_a_voice_message_on_instagram():
    message = only_message(meta.parse(read("instagram_audio", MEDIA_BASE="https://lookaside.fbsbx.com")))
    assert message.channel is Channel.INSTAGRAM and message.conversation_id == "ig-17841400000000001-9001"
    assert message.media == MediaRef("attachment_url", "https://lookaside.fbsbx.com/ig_audio.mp4")


def test_telegram_audio_file_is_fetched_like_a_voice_note_and_keeps_the_locale():
    message = only_message(telegram.parse(read("telegram_audio_file", FILE_ID="CQACAgQ"), bot_id="4242"))
    assert message.media == MediaRef("telegram_file_id", "CQACAgQ", "audio/mpeg", 250001)
    assert message.locale == "pt-BR" and message.message_id == "100005"


def test_telegram_updates_that_are_not_a_customer_message_are_ignored_by_kind():
    kinds = [dict(telegram.parse(update, bot_id="4242").ignored) for update in read("telegram_other_updates")]
    assert kinds == [{"callback_query": 1}, {"channel_post": 1}, {"echo": 1}, {"unsupported_type": 1}, {"my_chat_member": 1}]


def test_a_voice_message_becomes_an_event_with_its_audio_and_no_text():
    message = only_message(whatsapp.parse(read("whatsapp_voice", MEDIA_ID="987654321")))
    audio = InlineAudio(data_b64=base64.b64encode(b"OggS voice").decode(), mime_type="audio/ogg")
    event = message.to_event(audio)
    assert event.audio == audio and event.text is None
    assert event.platform_message_id == "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzQUI2"
    assert event.event_id == message.event_id  # the same id whether or not the media was fetched yet


def test_objects_of_other_products_are_ignored_not_misread():
    assert meta.parse(read("whatsapp_text")).ignored == {"unknown_object": 1}
    assert whatsapp.parse(read("messenger_text")).ignored == {"unknown_object": 1}
    assert telegram.parse(read("messenger_text"), bot_id="4242").ignored == {"non_message": 1}
