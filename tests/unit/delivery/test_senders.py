"""Each platform's send request, and how its answers are classified (sent, refused, try again)."""

import httpx
import pytest

from elmo.contracts.events import Channel
from services.delivery.senders import MessengerSender, SendRefused, SendUnavailable, TelegramSender, senders_from_settings
from services.delivery.settings import DeliverySettings
from tests.integration.edges.platform_standin import BOT_TOKEN, GRAPH_TOKEN, Reply


async def test_the_request_of_each_platform(standin, senders):
    await senders[Channel.MESSENGER].send("2222", "hi messenger")
    await senders[Channel.WHATSAPP].send("33612345678", "hi whatsapp")
    await senders[Channel.TELEGRAM].send("123", "hi telegram")
    messenger, whatsapp, telegram = standin.sends()
    assert messenger.path == "/graph/me/messages" and messenger.headers["authorization"] == f"Bearer {GRAPH_TOKEN}"
    assert messenger.json == {"recipient": {"id": "2222"}, "messaging_type": "RESPONSE", "message": {"text": "hi messenger"}}
    assert whatsapp.path == "/graph/106540352242922/messages"
    assert whatsapp.json == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "33612345678", "type": "text",
        "text": {"preview_url": False, "body": "hi whatsapp"},
    }  # fmt: skip
    assert telegram.path == f"/tg/bot{BOT_TOKEN}/sendMessage"
    assert telegram.json["chat_id"] == "123" and telegram.json["text"] == "hi telegram"


async def test_a_4xx_is_refused_with_the_platforms_words(standin, senders):
    standin.script("2222", Reply(400, {"error": {"message": "(#100) No matching user found", "code": 100}}))
    with pytest.raises(SendRefused, match=r"messenger: HTTP 400: \(#100\) No matching user found"):
        await senders[Channel.MESSENGER].send("2222", "hi")
    standin.script("123", Reply(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}))
    with pytest.raises(SendRefused, match="bot was blocked"):
        await senders[Channel.TELEGRAM].send("123", "hi")


async def test_5xx_429_and_timeouts_are_worth_another_try(standin, senders):
    standin.script(
        "123",
        Reply(502),
        Reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 3}}),
    )
    with pytest.raises(SendUnavailable, match="HTTP 502"):
        await senders[Channel.TELEGRAM].send("123", "hi")
    with pytest.raises(SendUnavailable) as too_many:
        await senders[Channel.TELEGRAM].send("123", "hi")
    assert too_many.value.retry_after_s == 3.0
    standin.script("33612345678", Reply(503, headers={"Retry-After": "7"}))
    with pytest.raises(SendUnavailable) as unavailable:
        await senders[Channel.WHATSAPP].send("33612345678", "hi")
    assert unavailable.value.retry_after_s == 7.0
    standin.script("2222", Reply(200, delay_s=0.6))
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        with pytest.raises(SendUnavailable, match="timed out"):
            await MessengerSender(impatient, f"{standin.base_url}/graph", GRAPH_TOKEN).send("2222", "hi")


async def test_an_unreachable_platform_is_unavailable_and_the_token_never_shows():
    async with httpx.AsyncClient(timeout=1.0) as client:
        sender = TelegramSender(client, "http://127.0.0.1:9", BOT_TOKEN)
        with pytest.raises(SendUnavailable) as error:
            await sender.send("123", "hi")
    assert "ConnectError" in str(error.value)
    assert BOT_TOKEN not in str(error.value) and "test-bot-secret" not in str(error.value)


async def test_telegram_200_without_ok_is_refused(standin, senders):
    standin.script("123", Reply(200, {"ok": False, "description": "Bad Request: message text is empty"}))
    with pytest.raises(SendRefused, match="message text is empty"):
        await senders[Channel.TELEGRAM].send("123", "hi")


async def test_only_configured_channels_get_a_sender():
    # Every credential given explicitly, so a developer's environment cannot change the outcome.
    none = {
        "messenger_page_token": "", "instagram_page_token": "", "whatsapp_access_token": "",
        "whatsapp_phone_number_id": "", "telegram_bot_token": "",
    }  # fmt: skip
    async with httpx.AsyncClient() as client:
        assert senders_from_settings(DeliverySettings(**none), client) == {}
        configured = senders_from_settings(
            DeliverySettings(
                **none
                | {"telegram_bot_token": BOT_TOKEN, "whatsapp_access_token": "t", "whatsapp_phone_number_id": "1", "messenger_page_token": "p"}
            ),
            client,
        )
        assert set(configured) == {Channel.TELEGRAM, Channel.WHATSAPP, Channel.MESSENGER}
        # A WhatsApp token without the number to send from is not a sender.
        assert Channel.WHATSAPP not in senders_from_settings(DeliverySettings(**none | {"whatsapp_access_token": "t"}), client)
