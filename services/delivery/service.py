"""The delivery service: elmo.replies -> the platforms' send APIs -> elmo.feedback (views).

The work is `services.delivery.core.DeliveryCore`; this module wires it to the runtime: an HTTP
client and the Redis send claims opened at start, closed at stop, and delivery's metrics served
next to the runtime's.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from elmo.contracts import topics
from elmo.contracts.events import Reply
from elmo.runtime import Stage, run_stage
from services.delivery.claims import RedisSendClaims
from services.delivery.core import DeliveryCore, Result, SendPolicy
from services.delivery.metrics import DeliveryMetrics
from services.delivery.senders import senders_from_settings
from services.delivery.settings import DeliverySettings


def build_stage(settings: DeliverySettings) -> Stage[Reply]:
    metrics = DeliveryMetrics()
    policy = SendPolicy(
        attempts=settings.delivery_send_attempts,
        backoff_s=settings.delivery_send_backoff_s,
        backoff_max_s=settings.delivery_send_backoff_max_s,
        lease_s=settings.send_lease_s(),
    )
    client: httpx.AsyncClient | None = None
    claims: RedisSendClaims | None = None
    core: DeliveryCore | None = None

    async def start() -> None:
        nonlocal client, claims, core
        client = httpx.AsyncClient(timeout=settings.delivery_send_timeout_s)
        claims = RedisSendClaims.from_url(settings.redis_url, settings.delivery_sent_ttl_s)
        core = DeliveryCore(senders_from_settings(settings, client), claims, metrics, policy)

    async def stop() -> None:
        if client is not None:
            await client.aclose()
        if claims is not None:
            await claims.close()

    async def deliver(replies: Sequence[Reply]) -> list[Result]:
        assert core is not None, "on_start opens the clients before consuming starts"
        return await core.deliver_batch(replies)

    return Stage(
        name="delivery",
        consumes=topics.REPLIES,
        emits=topics.FEEDBACK,
        input_type=Reply,
        process_batch=deliver,
        on_start=start,
        on_stop=stop,
        register_metrics=metrics.register,
        description="Replies sent through Messenger, Instagram, WhatsApp and Telegram; one view per recommendation shown.",
    )


def main() -> None:
    settings = DeliverySettings()
    run_stage(build_stage(settings), settings)
