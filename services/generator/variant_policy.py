"""Which wording of a strategy to send: Thompson sampling over the rewards each variant earned.

Each variant `<strategy>:<i>` has Beta(1 + successes, 1 + failures) over its success rate; a turn
draws one sample per variant and sends the best. The draw is seeded by (event id, strategy), so
reprocessing a turn with the same counts sends the same variant. Counts are read from Redis by
`refresh`, at most every `refresh_s` and never while a turn waits: a batch starts a refresh in the
background and samples from what was read last. A strategy with no counts yet falls back to
`stable_variant`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from elmo.reply_bandit import ArmCounts
from services.generator.policy import stable_variant

log = logging.getLogger("elmo.generator")

CountsReader = Callable[[Iterable[str]], Awaitable[Mapping[str, Mapping[str, ArmCounts]]]]


def variant_name(strategy: str, index: int) -> str:
    """How a reply names its variant (`Reply.variant`), and the bandit its arms."""
    return f"{strategy}:{index}"


def thompson_choice(counts: Mapping[str, ArmCounts], strategy: str, variants: int, key: str) -> int:
    seed = int.from_bytes(hashlib.sha256(f"{key}/{strategy}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    best, best_sample = 0, -1.0
    for index in range(variants):
        arm = counts.get(variant_name(strategy, index), ArmCounts())
        sample = rng.betavariate(1 + arm.successes, 1 + arm.failures)
        if sample > best_sample:
            best, best_sample = index, sample
    return best


class ThompsonVariantPolicy:
    """A `VariantChooser` (see policy.py) that learns which variants customers react well to."""

    def __init__(self, read_counts: CountsReader, strategies: Iterable[str], refresh_s: float = 5.0) -> None:
        self.read_counts = read_counts
        self.strategies = list(strategies)
        self.refresh_s = refresh_s
        self.counts: dict[str, dict[str, ArmCounts]] = {}
        self.refreshed_at: float | None = None
        self._refreshing: asyncio.Task | None = None

    def __call__(self, strategy: str, variants: int, key: str) -> int:
        counts = self.counts.get(strategy)
        if not counts or variants < 2:
            return stable_variant(strategy, variants, key)
        return thompson_choice(counts, strategy, variants, key)

    async def refresh(self) -> None:
        """Read every strategy's counts now (start-up; the background refresh calls it too)."""
        found = await self.read_counts(self.strategies)
        self.counts = {strategy: dict(arms) for strategy, arms in found.items()}
        self.refreshed_at = time.monotonic()

    def refresh_in_background(self) -> None:
        """Start a refresh if the counts are older than `refresh_s` and none is running; never waits."""
        if self._refreshing is not None and not self._refreshing.done():
            return
        if self.refreshed_at is not None and time.monotonic() - self.refreshed_at < self.refresh_s:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_logged())

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception as error:  # noqa: BLE001 - stale counts are better than no reply
            self.refreshed_at = time.monotonic()  # retry after refresh_s, not on every batch
            log.warning("bandit counts not refreshed; sampling from the last ones", extra={"fields": {"error": repr(error)}})

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
