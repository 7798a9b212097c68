"""Settings of the delivery service (environment, prefix `ELMO_`); the runtime's are inherited.

A channel is delivered only when its credentials are set; replies on other channels (web, other,
or a platform left unconfigured) are skipped and counted, not failed.
"""

from __future__ import annotations

from pydantic import Field

from elmo.runtime.settings import RuntimeSettings


class DeliverySettings(RuntimeSettings):
    meta_graph_base_url: str = Field(
        "https://graph.facebook.com/v21.0", description="Graph API base URL (Messenger, Instagram, WhatsApp sends)."
    )
    messenger_page_token: str = Field("", description="Page access token for the Messenger Send API; empty: Messenger replies are skipped.")
    instagram_page_token: str = Field(
        "", description="Page access token of the Instagram account's page; empty: Instagram replies are skipped."
    )
    whatsapp_access_token: str = Field("", description="WhatsApp Cloud API bearer token; empty: WhatsApp replies are skipped.")
    whatsapp_phone_number_id: str = Field("", description="The business phone number id replies are sent from.")
    telegram_bot_api_base_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL.")
    telegram_bot_token: str = Field("", description="Bot token for sendMessage; empty: Telegram replies are skipped.")
    delivery_send_timeout_s: float = Field(10.0, gt=0, description="Longest one send request may take.")
    delivery_send_attempts: int = Field(4, ge=1, description="Tries of a send that fails on 5xx, 429, a timeout or a connection error.")
    delivery_send_backoff_s: float = Field(0.5, ge=0, description="First delay between tries; doubles each try.")
    delivery_send_backoff_max_s: float = Field(8.0, ge=0, description="Cap on the delay between tries (also on a platform's Retry-After).")
    delivery_sent_ttl_s: int = Field(
        7 * 24 * 3600, ge=1, description="How long a sent reply's id is remembered, so it is never sent twice."
    )

    def send_lease_s(self) -> float:
        """Longest one reply's send can take with every retry: a claim older than this was abandoned."""
        delays = sum(
            min(self.delivery_send_backoff_s * 2**i, self.delivery_send_backoff_max_s) for i in range(self.delivery_send_attempts - 1)
        )
        return self.delivery_send_attempts * self.delivery_send_timeout_s + delays + 5.0
