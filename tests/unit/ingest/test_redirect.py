"""Tracking links: a signed token -> a click on elmo.feedback and a 302 to the product page; anything else -> 404."""

import base64
from urllib.parse import urlsplit

from elmo.contracts import topics
from elmo.contracts.events import Channel, Feedback, FeedbackKind
from elmo.link_settings import LinkSettings
from elmo.tools.supervisor import SERVICE_HTTP_PORTS
from elmo.tracking_links import TrackedLink, make_token
from services.ingest.settings import IngestSettings

SECRET = "dev-only-tracking-secret"
LINK = TrackedLink(
    tracking_id="trk-1",
    item_id="sku-42",
    user_id="33612345678",
    conversation_id="wa-1-33612345678",
    channel="whatsapp",
)
PRODUCT_PAGE = LinkSettings().product_url("sku-42")


async def test_a_click_is_recorded_then_redirected(make_ingest):
    ingest = make_ingest()
    response = await ingest.client.get(f"/r/{make_token(LINK, SECRET)}", headers={"user-agent": "Mozilla/5.0 (iPhone)"})
    assert response.status_code == 302
    assert response.headers["location"] == PRODUCT_PAGE
    assert response.headers["cache-control"] == "no-store"
    (click,) = ingest.publisher.on(topics.FEEDBACK)
    assert isinstance(click, Feedback)
    assert click.kind is FeedbackKind.RECOMMENDATION_CLICKED
    assert (click.tracking_id, click.item_id, click.user_id, click.conversation_id) == (
        "trk-1",
        "sku-42",
        "33612345678",
        "wa-1-33612345678",
    )
    assert click.channel is Channel.WHATSAPP
    assert ingest.publisher.on(topics.INBOUND) == []
    assert ingest.metric("elmo_tracking_redirects_total", outcome="redirected") == 1


async def test_repeated_clicks_on_one_link_share_an_event_id(make_ingest):
    ingest = make_ingest()
    token = make_token(LINK, SECRET)
    for _ in range(2):
        await ingest.client.get(f"/r/{token}")
    first, second = ingest.publisher.on(topics.FEEDBACK)
    assert first.event_id == second.event_id  # the chain's dedupe counts one click per shown link


async def test_bad_tampered_or_foreign_tokens_are_404_not_redirects(make_ingest):
    ingest = make_ingest()
    token = make_token(LINK, SECRET)
    signature = token.split(".")[1]
    other = make_token(LINK.model_copy(update={"item_id": "sku-43"}), SECRET).split(".")[0]
    for bad in ("nonsense", token[:-2], f"{other}.{signature}", make_token(LINK, "another-secret"), "%E9t%E9", "a.b.c", ".x"):
        response = await ingest.client.get(f"/r/{bad}")
        assert response.status_code == 404 and response.json()["error"] == "unknown_link", bad
        assert "location" not in response.headers
    not_a_link = f"{base64.urlsafe_b64encode(b'{}').decode().rstrip('=')}"
    forged = f"{not_a_link}.{signature}"
    assert (await ingest.client.get(f"/r/{forged}")).status_code == 404
    assert ingest.publisher.published == []
    assert ingest.metric("elmo_tracking_redirects_total", outcome="bad_token") == 8


async def test_link_preview_bots_are_redirected_without_a_click(make_ingest):
    ingest = make_ingest()
    response = await ingest.client.get(f"/r/{make_token(LINK, SECRET)}", headers={"user-agent": "WhatsApp/2.23.20.0 A"})
    assert response.status_code == 302 and ingest.publisher.published == []
    assert ingest.metric("elmo_tracking_redirects_total", outcome="preview") == 1


async def test_the_customer_is_redirected_even_when_the_click_cannot_be_recorded(make_ingest):
    ingest = make_ingest()
    ingest.publisher.fail = True
    response = await ingest.client.get(f"/r/{make_token(LINK, SECRET)}")
    assert response.status_code == 302 and response.headers["location"] == PRODUCT_PAGE
    assert ingest.metric("elmo_tracking_redirects_total", outcome="feedback_lost") == 1


async def test_an_empty_tracking_secret_refuses_every_link(make_ingest):
    ingest = make_ingest(tracking_secret="")
    assert (await ingest.client.get(f"/r/{make_token(LINK, '')}")).status_code == 404


def test_links_point_at_this_service_and_are_signed_with_its_secret_by_default():
    def default(settings_class, name):
        return settings_class.model_fields[name].default

    assert SERVICE_HTTP_PORTS["ingest"] == 8108 == default(IngestSettings, "http_port")
    assert urlsplit(default(LinkSettings, "tracking_base_url")).port == 8108
    assert default(IngestSettings, "tracking_secret") == default(LinkSettings, "tracking_secret") == SECRET
