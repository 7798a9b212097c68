"""Delivery under test: real senders against the local platform stand-in, claims in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from elmo.contracts.events import Channel, Recommendation, Reply
from services.delivery.claims import InMemorySendClaims
from services.delivery.core import DeliveryCore, SendPolicy
from services.delivery.metrics import DeliveryMetrics
from services.delivery.senders import MessengerSender, TelegramSender, WhatsAppSender
from tests.integration.edges.platform_standin import BOT_TOKEN, GRAPH_TOKEN, PlatformStandIn, platform_standin

FAST = SendPolicy(attempts=3, backoff_s=0.01, backoff_max_s=0.05, lease_s=5.0, poll_s=0.01)


def reply(
    event_id: str = "r-1", channel: Channel = Channel.TELEGRAM, user_id: str = "123", conversation_id: str | None = None, **fields
) -> Reply:
    values = {
        "event_id": event_id,
        "conversation_id": conversation_id or f"tg-4242-{user_id}",
        "user_id": user_id,
        "channel": channel,
        "text": "The Aurora runner comes in blue, size 42 is in stock.",
        "strategy": "recommend",
        "origin_event_id": "in-1",
        "recommendations": [
            Recommendation(
                item_id="sku-1",
                name="Aurora runner",
                score=0.9,
                reason="you asked for blue",
                tracking_id="trk-1",
                url="http://127.0.0.1:8108/r/abc",
            ),
            Recommendation(item_id="sku-2", name="Trail socks", score=0.5, reason="often bought together", tracking_id="trk-2"),
        ],
    }
    values.update(fields)
    return Reply(**values)


@pytest.fixture
def standin() -> Iterator[PlatformStandIn]:
    with platform_standin() as running:
        yield running


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


@pytest.fixture
def senders(standin: PlatformStandIn, http_client: httpx.AsyncClient) -> dict:
    graph = f"{standin.base_url}/graph"
    return {
        Channel.MESSENGER: MessengerSender(http_client, graph, GRAPH_TOKEN),
        Channel.INSTAGRAM: MessengerSender(http_client, graph, GRAPH_TOKEN, Channel.INSTAGRAM),
        Channel.WHATSAPP: WhatsAppSender(http_client, graph, "106540352242922", GRAPH_TOKEN),
        Channel.TELEGRAM: TelegramSender(http_client, f"{standin.base_url}/tg", BOT_TOKEN),
    }


@pytest.fixture
def core(senders: dict) -> DeliveryCore:
    return DeliveryCore(senders, InMemorySendClaims(), DeliveryMetrics(), FAST)
