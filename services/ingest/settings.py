"""Settings of the ingest service, from the environment (prefix `ELMO_`).

Every secret defaults to empty, and an endpoint whose secret is empty refuses every request (403
`not_configured`): a deployment that forgot a secret accepts nothing rather than anything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from elmo.link_settings import LinkSettings
from elmo.runtime.settings import ConnectionSettings

MIB = 1024 * 1024


class IngestSettings(ConnectionSettings):
    http_host: str = Field("127.0.0.1", description="Address the webhook server binds (0.0.0.0 in a pod).")
    http_port: int = Field(8108, description="Port of the webhooks, /r/{token}, /healthz, /readyz and /metrics.")
    log_level: str = Field("INFO", description="Log level of the JSON logs.")
    shutdown_grace_s: float = Field(20.0, ge=0, description="On SIGTERM, how long requests in flight may take.")

    # Who may call: one secret per endpoint.
    meta_app_secret: str = Field("", description="Messenger/Instagram app secret: HMAC key of X-Hub-Signature-256.")
    meta_verify_token: str = Field("", description="Token Meta echoes in the GET subscription handshake of /webhooks/meta.")
    whatsapp_app_secret: str = Field(
        "", description="WhatsApp app secret: HMAC key of X-Hub-Signature-256 (the Meta one if it is the same app)."
    )
    whatsapp_verify_token: str = Field("", description="Token of the GET subscription handshake of /webhooks/whatsapp.")
    telegram_secret_token: str = Field(
        "", description="The secret_token given to setWebhook; Telegram sends it in X-Telegram-Bot-Api-Secret-Token."
    )
    generic_secret: str = Field("", description="HMAC key of X-Elmo-Signature on /webhooks/generic.")
    tracking_secret: str = Field(
        LinkSettings.model_fields["tracking_secret"].default,
        description="Key that signs tracking links (/r/{token}); the services making links read the same variable.",
    )

    # Where media comes from (voice notes are fetched on arrival).
    whatsapp_access_token: str = Field("", description="Graph API bearer token to download WhatsApp media.")
    telegram_bot_token: str = Field("", description="Bot token (<bot id>:<secret>) for getFile; its bot id names Telegram conversations.")
    meta_graph_base_url: str = Field("https://graph.facebook.com/v21.0", description="Graph API base URL.")
    telegram_bot_api_base_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL (getFile).")
    telegram_file_base_url: str = Field("https://api.telegram.org/file", description="Telegram file download base URL.")
    meta_media_hosts: str = Field(
        "fbsbx.com,fbcdn.net,cdninstagram.com",
        description="Hosts (or parent domains), comma-separated, that Meta media URLs may point at; others are not fetched.",
    )
    ingest_media_max_bytes: int = Field(20 * MIB, ge=1, description="Largest voice note fetched; larger ones are refused.")
    ingest_media_timeout_s: float = Field(10.0, gt=0, description="Longest one media fetch (lookup and download) may take.")
    blob_dir: Path = Field(
        Path(".local/blobs"), description="Where audio above the inline limit (512 KiB) is written; events carry a file:// URI."
    )

    # How much a caller may send.
    ingest_max_body_bytes: int = Field(4 * MIB, ge=1, description="Largest webhook body; larger ones get 413.")
    ingest_rate_limit: int = Field(30, ge=0, description="Messages one sender may send per window (0: no limit); more get 429.")
    ingest_rate_window_s: int = Field(60, ge=1, description="Length of the rate limit's fixed window, in seconds.")
    ingest_dedupe_ttl_s: int = Field(
        7 * 24 * 3600, ge=1, description="How long a platform message id is remembered (Meta retries for days)."
    )
    ingest_publish_timeout_s: float = Field(5.0, gt=0, description="Longest the wait for Kafka's acknowledgement may take before 503.")

    def media_hosts(self) -> tuple[str, ...]:
        return tuple(host.strip().lower() for host in self.meta_media_hosts.split(",") if host.strip())

    def telegram_bot_id(self) -> str:
        """The bot's id: the part of the token before the colon ("bot" when no token is set)."""
        bot_id = self.telegram_bot_token.split(":", 1)[0]
        return bot_id if bot_id.isdigit() else "bot"
