"""Views on the real Redis: counted apart from clicks and purchases (they are impressions), and
left out of popularity, so the recommender can tell what a user chose from what it showed them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from elmo.interactions import Interaction, InteractionKind, InteractionStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(connections) -> AsyncIterator[InteractionStore]:
    prefix = f"test:interactions:{uuid.uuid4().hex[:8]}"
    store = InteractionStore.from_url(connections.redis_url, prefix=prefix)
    try:
        yield store
    finally:
        keys = [key async for key in store._client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await store._client.delete(*keys)
        await store.close()


async def test_views_are_counted_apart_and_are_not_popularity(store):
    await store.record_many(
        [
            Interaction("u1", "phone-nova", InteractionKind.VIEW, NOW, "v1"),
            Interaction("u1", "phone-nova", InteractionKind.VIEW, NOW, "v2"),
            Interaction("u1", "phone-nova", InteractionKind.CLICK, NOW, "c1"),
            Interaction("u1", "case-nova", InteractionKind.VIEW, NOW, "v3"),
            Interaction("u1", "case-nova", InteractionKind.VIEW, NOW, "v3"),  # redelivered: once
        ]
    )
    history = await store.history("u1")
    assert history.weights == {"phone-nova": 6.0, "case-nova": 1.0}
    assert history.views == {"phone-nova": 2.0, "case-nova": 1.0}
    assert history.engagement == {"phone-nova": 4.0}
    assert await store.popularity(NOW) == {"phone-nova": pytest.approx(4.0)}
    assert await store.users() == ["u1"]
    # Training reads every interaction, views included, as before.
    assert (await store.all_histories())["u1"].weights == history.weights
