"""The interaction store on the real Redis: shared histories, one count per feedback event, decay;
views counted apart (impressions) and left out of popularity."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from elmo.interactions import Interaction, InteractionKind, InteractionStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(connections) -> AsyncIterator[InteractionStore]:
    # A prefix of its own, so the test neither sees nor disturbs anyone else's interactions.
    prefix = f"test:interactions:{uuid.uuid4().hex[:8]}"
    store = InteractionStore.from_url(connections.redis_url, prefix=prefix)
    try:
        yield store
    finally:
        keys = [key async for key in store._client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await store._client.delete(*keys)
        await store.close()


async def test_weights_accumulate_per_user_and_purchases_keep_their_time(store):
    recorded = await store.record_many(
        [
            Interaction("u1", "phone-nova", InteractionKind.VIEW, NOW, "e1"),
            Interaction("u1", "phone-nova", InteractionKind.CLICK, NOW, "e2"),
            Interaction("u1", "phone-nova", InteractionKind.PURCHASE, NOW + timedelta(minutes=1), "e3"),
            Interaction("u1", "case-nova", InteractionKind.VIEW, NOW, "e4"),
            Interaction("u2", "trip-lisbon", InteractionKind.CLICK, NOW, "e5"),
        ]
    )
    assert recorded == 5
    histories = await store.histories(["u1", "u2", "nobody"])
    assert histories["u1"].weights == {"phone-nova": 15.0, "case-nova": 1.0}
    assert histories["u1"].purchases == {"phone-nova": (NOW + timedelta(minutes=1)).timestamp()}
    assert histories["u2"].weights == {"trip-lisbon": 4.0} and histories["u2"].purchased == frozenset()
    assert histories["nobody"].is_empty
    assert await store.users() == ["u1", "u2"]
    assert set(await store.all_histories()) == {"u1", "u2"}


async def test_the_same_feedback_event_counts_once(store):
    purchase = Interaction("u1", "phone-nova", InteractionKind.PURCHASE, NOW, "fb-1")
    assert await store.record(purchase) is True
    assert await store.record(purchase) is False  # redelivered after a crash: not counted again
    assert await store.record_many([purchase, Interaction("u1", "phone-nova", InteractionKind.PURCHASE, NOW, "fb-2")]) == 1
    assert (await store.history("u1")).weights == {"phone-nova": 20.0}
    popularity = await store.popularity(NOW)
    assert popularity["phone-nova"] == pytest.approx(20.0)


async def test_popularity_halves_every_half_life(store):
    week = timedelta(days=7)
    await store.record_many(
        [
            Interaction("u1", "old-favourite", InteractionKind.PURCHASE, NOW - 2 * week, "p1"),
            Interaction("u2", "old-favourite", InteractionKind.PURCHASE, NOW - 2 * week, "p2"),
            Interaction("u3", "this-week", InteractionKind.PURCHASE, NOW - timedelta(hours=1), "p3"),
        ]
    )
    popularity = await store.popularity(NOW)
    assert store.half_life_s == week.total_seconds()
    assert popularity["old-favourite"] == pytest.approx(20.0 / 4, rel=1e-6)  # two half-lives ago
    assert popularity["this-week"] == pytest.approx(10.0 * 2 ** (-1 / (7 * 24)), rel=1e-6)
    assert popularity["this-week"] > popularity["old-favourite"]
    # Read a week later, everything has halved.
    later = await store.popularity(NOW + week)
    assert later["this-week"] == pytest.approx(popularity["this-week"] / 2, rel=1e-6)


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
