"""The platforms' send APIs, one `Sender` per channel, and how their answers are classified.

A send either succeeds, is refused for good (`SendRefused`: a 4xx such as an unknown recipient or
a closed messaging window; retrying cannot help) or is unavailable for now (`SendUnavailable`: a
5xx, 408/429, a timeout or a connection error; worth retrying, after the platform's Retry-After
when it gives one). Messages never carry a request URL, so a bot token in a path stays out of
logs and dead letters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import httpx

from elmo.contracts.events import Channel
from services.delivery.settings import DeliverySettings

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class SendRefused(Exception):
    """The platform refused the request (4xx): sending it again would be refused again."""


class SendUnavailable(Exception):
    """The platform could not take the request now (5xx, 429, timeout, connection): try again later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Sender(Protocol):
    channel: Channel
    max_chars: int

    async def send(self, recipient: str, text: str) -> None: ...


def _platform_error(response: httpx.Response) -> tuple[str, float | None]:
    """The platform's own words about a failure, and its retry-after if it gave one."""
    retry_after: float | None = None
    header = response.headers.get("retry-after", "")
    if header.replace(".", "", 1).isdigit():
        retry_after = float(header)
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200], retry_after
    if not isinstance(body, dict):
        return str(body)[:200], retry_after
    if isinstance(body.get("error"), dict):  # Graph API
        error = body["error"]
        return f"{error.get('message', '')} (code {error.get('code')})"[:200], retry_after
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):  # Telegram's 429
        retry_after = float(parameters["retry_after"])
    return str(body.get("description", body))[:200], retry_after


class HttpSender(ABC):
    """POST a JSON body to a platform; subclasses say where and what."""

    channel: Channel
    max_chars: int

    def __init__(self, client: httpx.AsyncClient, secret: str) -> None:
        self.client = client
        self._secret = secret  # kept out of every message

    @abstractmethod
    def request(self, recipient: str, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The URL, JSON body and headers that send `text` to `recipient`."""

    async def send(self, recipient: str, text: str) -> None:
        url, body, headers = self.request(recipient, text)
        try:
            response = await self.client.post(url, json=body, headers=headers)
        except httpx.TimeoutException as error:
            raise SendUnavailable(f"{self.channel.value}: timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise SendUnavailable(f"{self.channel.value}: {type(error).__name__}: {self._redact(str(error))}"[:300]) from None
        if response.is_success and self._accepted(response):
            return
        detail, retry_after = _platform_error(response)
        message = f"{self.channel.value}: HTTP {response.status_code}: {self._redact(detail)}"
        if response.status_code in RETRYABLE_STATUSES or response.status_code >= 500:
            raise SendUnavailable(message, retry_after)
        raise SendRefused(message)

    def _accepted(self, response: httpx.Response) -> bool:
        return True

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "<secret>") if self._secret else text


class MessengerSender(HttpSender):
    """Messenger Send API (also Instagram's, with the page token of the Instagram account's page)."""

    max_chars = 2000

    def __init__(self, client: httpx.AsyncClient, graph_base_url: str, page_token: str, channel: Channel = Channel.MESSENGER) -> None:
        super().__init__(client, page_token)
        self.url = f"{graph_base_url.rstrip('/')}/me/messages"
        self.channel = channel

    def request(self, recipient: str, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": text}}
        return self.url, body, {"Authorization": f"Bearer {self._secret}"}


class WhatsAppSender(HttpSender):
    channel = Channel.WHATSAPP
    max_chars = 4096

    def __init__(self, client: httpx.AsyncClient, graph_base_url: str, phone_number_id: str, access_token: str) -> None:
        super().__init__(client, access_token)
        self.url = f"{graph_base_url.rstrip('/')}/{phone_number_id}/messages"

    def request(self, recipient: str, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        # No link previews: a preview fetch of a tracking link is not the customer clicking.
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": recipient,
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        return self.url, body, {"Authorization": f"Bearer {self._secret}"}


class TelegramSender(HttpSender):
    channel = Channel.TELEGRAM
    max_chars = 4096

    def __init__(self, client: httpx.AsyncClient, bot_api_base_url: str, bot_token: str) -> None:
        super().__init__(client, bot_token)
        self.url = f"{bot_api_base_url.rstrip('/')}/bot{bot_token}/sendMessage"

    def request(self, recipient: str, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        # In a private chat the chat id is the user's id, which ingest recorded as user_id.
        return self.url, {"chat_id": recipient, "text": text, "link_preview_options": {"is_disabled": True}}, {}

    def _accepted(self, response: httpx.Response) -> bool:
        try:
            return response.json().get("ok") is True
        except (ValueError, AttributeError):
            return False


def senders_from_settings(settings: DeliverySettings, client: httpx.AsyncClient) -> dict[Channel, Sender]:
    """A sender for each channel whose credentials are set."""
    senders: dict[Channel, Sender] = {}
    if settings.messenger_page_token:
        senders[Channel.MESSENGER] = MessengerSender(client, settings.meta_graph_base_url, settings.messenger_page_token)
    if settings.instagram_page_token:
        senders[Channel.INSTAGRAM] = MessengerSender(client, settings.meta_graph_base_url, settings.instagram_page_token, Channel.INSTAGRAM)
    if settings.whatsapp_access_token and settings.whatsapp_phone_number_id:
        senders[Channel.WHATSAPP] = WhatsAppSender(
            client, settings.meta_graph_base_url, settings.whatsapp_phone_number_id, settings.whatsapp_access_token
        )
    if settings.telegram_bot_token:
        senders[Channel.TELEGRAM] = TelegramSender(client, settings.telegram_bot_api_base_url, settings.telegram_bot_token)
    return senders
