"""Where links point: the shop's product pages and the tracking redirect in front of them.

Shared by the services that make links (recommender, generator) and the redirect endpoint that
reads them, so the three agree on the base URL and the signing secret.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LinkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    shop_url: str = Field("https://shop.northwind.example", description="The shop; a product page is <shop_url>/p/<item id>.")
    tracking_base_url: str = Field("http://127.0.0.1:8108", description="Base URL of the click-tracking redirect (`<base>/r/<token>`).")
    tracking_secret: str = Field("dev-only-tracking-secret", description="HMAC secret signing tracking links; set a real one outside dev.")

    def product_url(self, item_id: str) -> str:
        """Where a tracking link for `item_id` redirects."""
        return f"{self.shop_url.rstrip('/')}/p/{item_id}"
