"""Voice media, fetched on arrival (Meta keeps inbound media only for a while) and kept for asr.

A `MediaFetcher` turns a message's `MediaRef` into audio bytes: `GraphMediaFetcher` (WhatsApp: the
media id's short-lived URL from the Graph API, then that URL with the bearer token),
`AttachmentUrlFetcher` (Messenger and Instagram: the attachment's CDN URL) and
`TelegramFileFetcher` (getFile, then the file URL). Every download has a deadline, a size limit
and a content-type check (audio only), and Meta downloads stay on Meta's media hosts, redirects
included. A failure says whether trying again later can help: the webhook then answers 503 so the
platform redelivers; otherwise the message is acknowledged and dropped, with a metric, since a
redelivery would fail the same way.

`AudioStore` keeps audio up to the contract's inline limit in the event itself and writes larger
audio to the blob directory, referenced by a `file://` URI with its size and sha256.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from elmo.contracts.events import INLINE_AUDIO_MAX_BYTES, BlobAudio, InlineAudio
from services.ingest.messages import MediaKind, MediaRef
from services.ingest.settings import IngestSettings

# Served types that are audio under another name; anything else not audio/* is refused.
AUDIO_ALIASES = {"application/ogg": "audio/ogg", "video/mp4": "audio/mp4", "video/webm": "audio/webm"}
UNLABELLED_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
SUFFIX_BY_TYPE = {
    "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/mp4": ".m4a",
    "audio/m4a": ".m4a", "audio/x-m4a": ".m4a", "audio/aac": ".aac", "audio/wav": ".wav", "audio/x-wav": ".wav",
    "audio/webm": ".webm",
}  # fmt: skip


class MediaFetchFailed(Exception):
    """A voice note that could not be fetched; `reason` is a metric label, `retryable` decides 503."""

    def __init__(self, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    mime_type: str


class MediaFetcher(Protocol):
    async def fetch(self, ref: MediaRef) -> FetchedMedia: ...


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    timeout_s: float


def audio_mime_type(content_type: str | None, declared: str | None) -> str | None:
    """The audio type to record, from what the server said and what the webhook declared; None if not audio."""
    served = (content_type or "").strip()
    base = served.split(";", 1)[0].strip().lower()
    if base.startswith("audio/"):
        return served
    if base in AUDIO_ALIASES:
        return AUDIO_ALIASES[base]
    if base in UNLABELLED_TYPES and declared and declared.strip().lower().startswith("audio/"):
        return declared.strip()
    return None


def failure_for_status(status: int, what: str) -> MediaFetchFailed:
    if status in (401, 403):
        # Our credentials: fixable by an operator, so let the platform redeliver meanwhile.
        return MediaFetchFailed("unauthorized", f"{what}: HTTP {status} (check the access token)", retryable=True)
    if status in (408, 425, 429) or status >= 500:
        return MediaFetchFailed("upstream_unavailable", f"{what}: HTTP {status}", retryable=True)
    if status in (404, 410):
        return MediaFetchFailed("not_found", f"{what}: HTTP {status} (expired or unknown media)", retryable=False)
    return MediaFetchFailed("refused", f"{what}: HTTP {status}", retryable=False)


def host_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    return any(host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts)


MAX_REDIRECTS = 5


async def download(
    client: httpx.AsyncClient,
    url: str,
    limits: DownloadLimits,
    *,
    headers: dict[str, str] | None = None,
    declared_mime_type: str | None = None,
    what: str = "media download",
    allowed_hosts: tuple[str, ...] | None = None,
) -> FetchedMedia:
    """GET `url`, refusing more than `limits.max_bytes` and anything that is not audio.

    Redirects are followed here rather than by httpx, so each hop is checked against
    `allowed_hosts` (a CDN URL must not bounce the fetch to an internal address) and credentials
    go only to the origin they were given for.
    """
    origin = urlsplit(url)[:2]
    for _ in range(MAX_REDIRECTS + 1):
        same_origin = urlsplit(url)[:2] == origin
        async with client.stream("GET", url, headers=headers if same_origin else None, follow_redirects=False) as response:
            if response.is_redirect and response.next_request is not None:
                url = str(response.next_request.url)
                if allowed_hosts is not None and not host_allowed(url, allowed_hosts):
                    raise MediaFetchFailed(
                        "host_not_allowed", f"{what}: redirected to {urlsplit(url).hostname!r}, not an allowed host", retryable=False
                    )
                continue
            return await _read_audio(response, limits, declared_mime_type, what)
    raise MediaFetchFailed("too_many_redirects", f"{what}: more than {MAX_REDIRECTS} redirects", retryable=False)


async def _read_audio(response: httpx.Response, limits: DownloadLimits, declared_mime_type: str | None, what: str) -> FetchedMedia:
    if response.status_code != 200:
        raise failure_for_status(response.status_code, what)
    mime_type = audio_mime_type(response.headers.get("content-type"), declared_mime_type)
    if mime_type is None:
        raise MediaFetchFailed("not_audio", f"{what}: served {response.headers.get('content-type')!r}, not audio", retryable=False)
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_bytes:
        raise MediaFetchFailed("too_large", f"{what}: {length} bytes, the limit is {limits.max_bytes}", retryable=False)
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise MediaFetchFailed("too_large", f"{what}: more than {limits.max_bytes} bytes", retryable=False)
        chunks.append(chunk)
    if size == 0:
        raise MediaFetchFailed("empty", f"{what}: 0 bytes", retryable=False)
    return FetchedMedia(b"".join(chunks), mime_type)


async def _json(client: httpx.AsyncClient, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.get(url, **kwargs)
    if response.status_code != 200:
        raise failure_for_status(response.status_code, what)
    try:
        document = response.json()
    except ValueError as error:
        raise MediaFetchFailed("bad_response", f"{what}: not JSON", retryable=True) from error
    if not isinstance(document, dict):
        raise MediaFetchFailed("bad_response", f"{what}: not a JSON object", retryable=True)
    return document


class GraphMediaFetcher:
    """WhatsApp media: `GET {graph}/{media_id}` gives a short-lived URL, fetched with the same bearer token."""

    def __init__(
        self, client: httpx.AsyncClient, graph_base_url: str, access_token: str, allowed_hosts: tuple[str, ...], limits: DownloadLimits
    ) -> None:
        self.client = client
        self.base = graph_base_url.rstrip("/")
        self.token = access_token
        self.allowed_hosts = allowed_hosts
        self.limits = limits

    async def fetch(self, ref: MediaRef) -> FetchedMedia:
        if not self.token:
            raise MediaFetchFailed("not_configured", "ELMO_WHATSAPP_ACCESS_TOKEN is not set", retryable=True)
        auth = {"Authorization": f"Bearer {self.token}"}
        info = await _json(self.client, f"{self.base}/{quote(ref.reference, safe='')}", "graph media lookup", headers=auth)
        url = info.get("url")
        if not isinstance(url, str) or not url:
            raise MediaFetchFailed("bad_response", "graph media lookup: no url", retryable=True)
        if not host_allowed(url, self.allowed_hosts):
            raise MediaFetchFailed("host_not_allowed", f"graph media url host {urlsplit(url).hostname!r} is not allowed", retryable=False)
        declared = info.get("mime_type") if isinstance(info.get("mime_type"), str) else ref.declared_mime_type
        return await download(
            self.client,
            url,
            self.limits,
            headers=auth,
            declared_mime_type=declared,
            what="whatsapp media download",
            allowed_hosts=self.allowed_hosts,
        )


class AttachmentUrlFetcher:
    """Messenger and Instagram audio attachments: the CDN URL in the webhook, no token needed."""

    def __init__(self, client: httpx.AsyncClient, allowed_hosts: tuple[str, ...], limits: DownloadLimits) -> None:
        self.client, self.allowed_hosts, self.limits = client, allowed_hosts, limits

    async def fetch(self, ref: MediaRef) -> FetchedMedia:
        if not host_allowed(ref.reference, self.allowed_hosts):
            raise MediaFetchFailed(
                "host_not_allowed", f"attachment host {urlsplit(ref.reference).hostname!r} is not allowed", retryable=False
            )
        return await download(
            self.client,
            ref.reference,
            self.limits,
            declared_mime_type=ref.declared_mime_type,
            what="attachment download",
            allowed_hosts=self.allowed_hosts,
        )


class TelegramFileFetcher:
    """Telegram voice: `getFile(file_id)` gives a file path, downloaded from `{file_base}/bot<token>/<path>`."""

    def __init__(
        self, client: httpx.AsyncClient, bot_api_base_url: str, file_base_url: str, bot_token: str, limits: DownloadLimits
    ) -> None:
        self.client = client
        self.api = bot_api_base_url.rstrip("/")
        self.files = file_base_url.rstrip("/")
        self.token = bot_token
        self.limits = limits

    async def fetch(self, ref: MediaRef) -> FetchedMedia:
        if not self.token:
            raise MediaFetchFailed("not_configured", "ELMO_TELEGRAM_BOT_TOKEN is not set", retryable=True)
        if ref.declared_size is not None and ref.declared_size > self.limits.max_bytes:
            raise MediaFetchFailed(
                "too_large", f"telegram file: {ref.declared_size} bytes, the limit is {self.limits.max_bytes}", retryable=False
            )
        answer = await _json(self.client, f"{self.api}/bot{self.token}/getFile", "telegram getFile", params={"file_id": ref.reference})
        file_path = answer.get("result", {}).get("file_path") if isinstance(answer.get("result"), dict) else None
        if answer.get("ok") is not True or not isinstance(file_path, str) or not file_path:
            raise MediaFetchFailed("bad_response", "telegram getFile: no file_path", retryable=True)
        url = f"{self.files}/bot{self.token}/{quote(file_path, safe='/')}"
        return await download(
            self.client, url, self.limits, declared_mime_type=ref.declared_mime_type or "audio/ogg", what="telegram file download"
        )


class MediaFetchers:
    """The fetcher for each kind of media reference, with one deadline over lookup and download."""

    def __init__(self, fetchers: dict[MediaKind, MediaFetcher], timeout_s: float) -> None:
        self.fetchers, self.timeout_s = fetchers, timeout_s

    async def fetch(self, ref: MediaRef) -> FetchedMedia:
        fetcher = self.fetchers.get(ref.kind)
        if fetcher is None:
            raise MediaFetchFailed("not_configured", f"no fetcher for {ref.kind}", retryable=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await fetcher.fetch(ref)
        except MediaFetchFailed:
            raise
        except (TimeoutError, httpx.TimeoutException) as error:
            raise MediaFetchFailed("timeout", f"media fetch took more than {self.timeout_s:g} s", retryable=True) from error
        except httpx.InvalidURL as error:
            raise MediaFetchFailed("invalid_url", "media URL is not valid", retryable=False) from error
        except httpx.HTTPError as error:
            raise MediaFetchFailed("connection", f"media fetch failed: {type(error).__name__}", retryable=True) from error


def fetchers_from_settings(settings: IngestSettings, client: httpx.AsyncClient) -> MediaFetchers:
    limits = DownloadLimits(settings.ingest_media_max_bytes, settings.ingest_media_timeout_s)
    hosts = settings.media_hosts()
    telegram = TelegramFileFetcher(
        client, settings.telegram_bot_api_base_url, settings.telegram_file_base_url, settings.telegram_bot_token, limits
    )
    return MediaFetchers(
        {
            "graph_media_id": GraphMediaFetcher(client, settings.meta_graph_base_url, settings.whatsapp_access_token, hosts, limits),
            "attachment_url": AttachmentUrlFetcher(client, hosts, limits),
            "telegram_file_id": telegram,
        },
        settings.ingest_media_timeout_s,
    )


class AudioStore:
    def __init__(self, blob_dir: Path) -> None:
        self.blob_dir = blob_dir

    async def keep(self, media: FetchedMedia) -> InlineAudio | BlobAudio:
        if len(media.data) <= INLINE_AUDIO_MAX_BYTES:
            return InlineAudio(data_b64=base64.b64encode(media.data).decode(), mime_type=media.mime_type)
        digest = hashlib.sha256(media.data).hexdigest()
        try:
            path = await asyncio.to_thread(self._write, media, digest)
        except OSError as error:
            raise MediaFetchFailed("storage", f"could not write the blob: {error.strerror}", retryable=True) from error
        return BlobAudio(uri=path.as_uri(), mime_type=media.mime_type, size_bytes=len(media.data), sha256=digest)

    def _write(self, media: FetchedMedia, digest: str) -> Path:
        suffix = SUFFIX_BY_TYPE.get(media.mime_type.split(";", 1)[0].strip().lower(), ".bin")
        directory = self.blob_dir.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{digest}{suffix}"
        if not path.exists():  # content-addressed: the same audio is written once
            with tempfile.NamedTemporaryFile(dir=directory, delete=False, prefix=".partial-") as handle:
                handle.write(media.data)
            os.replace(handle.name, path)
        return path
