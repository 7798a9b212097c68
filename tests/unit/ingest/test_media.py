"""Voice notes fetched on arrival from a local stand-in of the platforms: inline, blob, or refused."""

import base64
import hashlib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pytest

from elmo.contracts import topics
from elmo.contracts.events import INLINE_AUDIO_MAX_BYTES, BlobAudio, InlineAudio
from services.ingest.media import AttachmentUrlFetcher, DownloadLimits, MediaFetchers, MediaFetchFailed, audio_mime_type, download
from services.ingest.messages import MediaRef
from tests.integration.edges.platform_standin import GRAPH_TOKEN, Reply
from tests.unit.ingest.conftest import payload

VOICE = b"OggS\x00\x02" + bytes(range(256)) * 8  # bytes are passed through, never decoded here


async def test_whatsapp_voice_is_fetched_through_the_graph_api_and_published_inline(standin, make_ingest):
    standin.add_media("media-1", VOICE, "audio/ogg", bearer=GRAPH_TOKEN)
    ingest = make_ingest(standin.base_url)
    response = await ingest.whatsapp(payload("whatsapp_voice", MEDIA_ID="media-1"))
    assert response.status_code == 200 and response.json()["published"] == 1
    (event,) = ingest.publisher.on(topics.INBOUND)
    assert isinstance(event.audio, InlineAudio) and event.text is None
    assert event.audio.data() == VOICE and event.audio.mime_type == "audio/ogg"
    # Lookup then download, both with the bearer token.
    assert standin.paths() == ["/graph/media-1", "/cdn/media-1"]
    assert all(r.headers["authorization"] == f"Bearer {GRAPH_TOKEN}" for r in standin.requests)
    assert ingest.metric("elmo_audio_stored_total", storage="inline") == 1


async def test_audio_above_the_inline_limit_goes_to_the_blob_directory(standin, make_ingest, tmp_path):
    big = b"OggS" + bytes(INLINE_AUDIO_MAX_BYTES)
    standin.add_media("media-big", big, "audio/ogg", bearer=GRAPH_TOKEN)
    ingest = make_ingest(standin.base_url)
    assert (await ingest.whatsapp(payload("whatsapp_voice", MEDIA_ID="media-big"))).status_code == 200
    (event,) = ingest.publisher.on(topics.INBOUND)
    assert isinstance(event.audio, BlobAudio)
    path = Path(url2pathname(urlparse(event.audio.uri).path))
    assert event.audio.uri.startswith("file:///") and path.parent == (tmp_path / "blobs").resolve()
    assert path.read_bytes() == big
    assert event.audio.size_bytes == len(big) and event.audio.sha256 == hashlib.sha256(big).hexdigest()
    assert ingest.metric("elmo_audio_stored_total", storage="blob") == 1


async def test_messenger_audio_attachment_is_fetched_from_its_url(standin, make_ingest):
    standin.add_media("messenger-voice", VOICE, "audio/mp4")
    ingest = make_ingest(standin.base_url)
    assert (await ingest.meta(payload("messenger_audio", MEDIA_BASE=standin.base_url))).status_code == 200
    (event,) = ingest.publisher.on(topics.INBOUND)
    assert event.audio.mime_type == "audio/mp4" and base64.b64decode(event.audio.data_b64) == VOICE


async def test_telegram_voice_is_fetched_with_get_file_and_labelled_from_the_update(standin, make_ingest):
    standin.add_media("AwACAgQ", VOICE)
    ingest = make_ingest(standin.base_url)
    assert (await ingest.telegram(payload("telegram_voice", FILE_ID="AwACAgQ"))).status_code == 200
    (event,) = ingest.publisher.on(topics.INBOUND)
    # The file server says application/octet-stream; the update said audio/ogg.
    assert event.audio.mime_type == "audio/ogg" and event.audio.data() == VOICE
    assert standin.paths() == ["/tg/bot4242:test-bot-secret/getFile", "/tgfile/bot4242:test-bot-secret/voice/AwACAgQ.oga"]


async def test_a_transient_media_failure_is_503_and_the_redelivery_is_published(standin, make_ingest):
    standin.add_media("media-flaky", VOICE, "audio/ogg", bearer=GRAPH_TOKEN)
    standin.script("media-flaky", 500)
    ingest = make_ingest(standin.base_url)
    body = payload("whatsapp_voice", MEDIA_ID="media-flaky")
    failed = await ingest.whatsapp(body)
    assert failed.status_code == 503 and failed.json()["error"] == "media_unavailable"
    assert ingest.publisher.published == []
    assert ingest.metric("elmo_media_fetch_failures_total", channel="whatsapp", reason="upstream_unavailable", retryable="true") == 1
    retried = await ingest.whatsapp(body)
    assert retried.status_code == 200 and retried.json()["published"] == 1


async def test_a_slow_platform_times_out_as_retryable(standin, make_ingest):
    standin.add_media("media-slow", VOICE, "audio/ogg", bearer=GRAPH_TOKEN)
    standin.script("media-slow", Reply(200, delay_s=1.5))
    ingest = make_ingest(standin.base_url, ingest_media_timeout_s=0.5)
    response = await ingest.whatsapp(payload("whatsapp_voice", MEDIA_ID="media-slow"))
    assert response.status_code == 503
    assert ingest.metric("elmo_media_fetch_failures_total", channel="whatsapp", reason="timeout", retryable="true") == 1


@pytest.mark.parametrize(
    ("setup", "overrides", "reason"),
    [
        (lambda s: None, {}, "refused"),  # the Graph API does not know the media id (400)
        (lambda s: s.add_media("media-1", b"<html>login</html>", "text/html", bearer=GRAPH_TOKEN), {}, "not_audio"),
        (lambda s: s.add_media("media-1", VOICE, "audio/ogg", bearer=GRAPH_TOKEN), {"ingest_media_max_bytes": 100}, "too_large"),
        (lambda s: s.add_media("media-1", VOICE, "audio/ogg", bearer=GRAPH_TOKEN), {"meta_media_hosts": "fbsbx.com"}, "host_not_allowed"),
    ],
)
async def test_media_that_can_never_be_fetched_is_acknowledged_dropped_and_counted(standin, make_ingest, setup, overrides, reason):
    setup(standin)
    ingest = make_ingest(standin.base_url, **overrides)
    response = await ingest.whatsapp(payload("whatsapp_voice", MEDIA_ID="media-1"))
    assert response.status_code == 200 and response.json()["media_dropped"] == 1
    assert ingest.publisher.published == []
    assert ingest.metric("elmo_media_fetch_failures_total", channel="whatsapp", reason=reason, retryable="false") == 1


async def test_a_missing_token_is_retryable_so_nothing_is_lost_while_it_is_fixed(standin, make_ingest):
    ingest = make_ingest(standin.base_url, whatsapp_access_token="")
    assert (await ingest.whatsapp(payload("whatsapp_voice", MEDIA_ID="media-1"))).status_code == 503
    assert standin.requests == []


async def test_oversized_downloads_are_cut_off_even_without_a_content_length():
    def streamed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "audio/ogg"}, stream=httpx.ByteStream(b"x" * 5000))

    async with httpx.AsyncClient(transport=httpx.MockTransport(streamed)) as client:
        fetcher = AttachmentUrlFetcher(client, ("fbsbx.com",), DownloadLimits(max_bytes=1000, timeout_s=1))
        fetchers = MediaFetchers({"attachment_url": fetcher}, timeout_s=1)
        with pytest.raises(MediaFetchFailed) as failure:
            await fetchers.fetch(MediaRef("attachment_url", "https://cdn.fbsbx.com/v.ogg"))
    assert failure.value.reason == "too_large" and not failure.value.retryable


def test_which_served_types_count_as_audio():
    assert audio_mime_type("audio/ogg; codecs=opus", None) == "audio/ogg; codecs=opus"
    assert audio_mime_type("application/octet-stream", "audio/ogg") == "audio/ogg"
    assert audio_mime_type(None, "audio/mpeg") == "audio/mpeg"
    assert audio_mime_type("video/mp4", None) == "audio/mp4"
    assert audio_mime_type("application/octet-stream", "image/png") is None
    assert audio_mime_type("text/html", "audio/ogg") is None
    assert audio_mime_type("image/jpeg", None) is None


def redirecting(target: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    """A CDN whose /v.ogg redirects to `target`; anything else is audio."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v.ogg":
            return httpx.Response(302, headers={"location": target})
        return httpx.Response(200, headers={"content-type": "audio/ogg"}, content=VOICE)

    return httpx.MockTransport(answer)


async def test_a_redirect_off_the_allowed_hosts_is_not_followed():
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=redirecting("http://169.254.169.254/latest/meta-data", seen)) as client:
        fetchers = MediaFetchers({"attachment_url": AttachmentUrlFetcher(client, ("fbsbx.com",), DownloadLimits(10_000, 1))}, 1)
        with pytest.raises(MediaFetchFailed) as failure:
            await fetchers.fetch(MediaRef("attachment_url", "https://cdn.fbsbx.com/v.ogg"))
    assert failure.value.reason == "host_not_allowed" and not failure.value.retryable
    assert [str(r.url) for r in seen] == ["https://cdn.fbsbx.com/v.ogg"]  # the internal address was never asked


async def test_a_redirect_within_the_allowed_hosts_is_followed_and_the_token_stays_with_its_origin():
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=redirecting("https://scontent.xx.fbcdn.net/audio.ogg", seen)) as client:
        media = await download(
            client,
            "https://lookaside.fbsbx.com/v.ogg",
            DownloadLimits(10_000, 1),
            headers={"Authorization": "Bearer secret-token"},
            allowed_hosts=("fbsbx.com", "fbcdn.net"),
        )
    assert media.data == VOICE and media.mime_type == "audio/ogg"
    assert [r.url.host for r in seen] == ["lookaside.fbsbx.com", "scontent.xx.fbcdn.net"]
    assert seen[0].headers["authorization"] == "Bearer secret-token" and "authorization" not in seen[1].headers


async def test_a_redirect_loop_ends():
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=redirecting("https://cdn.fbsbx.com/v.ogg", seen)) as client:
        with pytest.raises(MediaFetchFailed) as failure:
            await download(client, "https://cdn.fbsbx.com/v.ogg", DownloadLimits(10_000, 1), allowed_hosts=("fbsbx.com",))
    assert failure.value.reason == "too_many_redirects" and len(seen) == 6


async def test_one_webhook_with_text_voice_and_statuses_publishes_both_messages(standin, make_ingest):
    standin.add_media("555000111", VOICE, "audio/ogg", bearer=GRAPH_TOKEN)
    ingest = make_ingest(standin.base_url)
    response = await ingest.whatsapp(payload("whatsapp_mixed"))
    assert response.status_code == 200
    assert {k: v for k, v in response.json().items() if v} == {"published": 2, "ignored": 4}
    text, voice = ingest.publisher.on(topics.INBOUND)
    assert (text.text, text.user_id) == ("first question", "33612345678")
    assert voice.audio.data() == VOICE and voice.user_id == "4915112345678"
