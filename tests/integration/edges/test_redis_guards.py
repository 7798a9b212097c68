"""The Redis side of the edges: ingest's dedupe and rate limit, delivery's send claims."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as redis

from services.delivery.claims import Claim, RedisSendClaims
from services.ingest.dedupe import RedisMessageClaims
from services.ingest.rate_limit import RedisFixedWindow

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(connections):
    store = redis.Redis.from_url(connections.redis_url)
    yield store
    await store.aclose()


async def test_message_claims_once_then_released_then_once_again(client):
    claims, key = RedisMessageClaims(client, ttl_s=60), f"it:{uuid.uuid4().hex}"
    assert await claims.claim(key) is True
    assert await claims.claim(key) is False
    await claims.release(key)
    assert await claims.claim(key) is True
    assert 0 < await client.ttl("elmo:ingest:message:" + key) <= 60


async def test_fixed_window_counts_per_sender(client):
    limiter, sender = RedisFixedWindow(client, limit=3, window_s=60), f"it:{uuid.uuid4().hex}"
    assert [await limiter.allow(sender) for _ in range(5)] == [True, True, True, False, False]
    assert await limiter.allow(sender + "-other") is True
    assert await RedisFixedWindow(client, limit=0, window_s=60).allow(sender) is True


async def test_send_claims_claim_mark_and_release_only_their_own(client):
    claims, reply_id = RedisSendClaims(client, ttl_s=60), f"it-{uuid.uuid4().hex}"
    mine = await claims.claim(reply_id)
    assert mine.state == "claimed"
    other = await claims.claim(reply_id)
    assert other.state == "in_flight" and other.claimed_at is not None
    await claims.release(reply_id, Claim("claimed", b"sending:someone-else:0"))  # not the holder: nothing happens
    assert (await claims.claim(reply_id)).state == "in_flight"
    await claims.release(reply_id, mine)
    again = await claims.claim(reply_id)
    assert again.state == "claimed"
    await claims.mark_sent(reply_id)
    assert (await claims.claim(reply_id)).state == "sent"
    await claims.release(reply_id, again)  # a sent mark is never released
    assert (await claims.claim(reply_id)).state == "sent"
