"""Whether Redis still holds what the feedback loop learnt, and telling the operator when it does not.

Redis is a cache of what Kafka holds: interaction histories, popularity, the reply index, the
bandit's counts and the corrections are all derived from elmo.replies and elmo.feedback, and
`elmo state rebuild` derives them again. What nobody can derive is whether they were lost: after a
restart without the append-only file, a FLUSHALL or a new volume, recommendations quietly lose
every history and the bandit its counts. So each store prefix carries a mark:

- `<prefix>:state-epoch` (JSON: when, by whom; no TTL): the state under the prefix is whole. The
  feedback-trainer writes it at start on a fresh install (elmo.feedback empty) or when it finds
  state written before the marks existed; `elmo state rebuild` writes it when done.
- `<prefix>:state-lost`: the feedback-trainer saw the mark vanish while it ran. It keeps writing
  new reactions, so the store is not empty at its next start; this mark remembers the loss until a
  rebuild deletes it.

A service that finds the state lost (`rebuild_needed`) logs a WARNING naming the command and sets
the gauge `elmo_state_rebuild_needed` to 1; it does not rebuild by itself (several replicas would
race, and a rebuild over live writes needs an operator's choice of `--wipe` or `--since`). The
check runs at start and every `ELMO_STATE_CHECK_INTERVAL_S` (one EXISTS per prefix).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import anyio.to_thread
import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from elmo.contracts import topics
from elmo.interactions import users_key

log = logging.getLogger("elmo.state")

REBUILD_COMMAND = "elmo state rebuild"


class StateCheckSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    state_check_interval_s: float = Field(
        15.0, gt=0, description="How often a service checks that Redis still holds the learnt state (its state-epoch marks)."
    )


def epoch_key(prefix: str) -> str:
    return f"{prefix}:state-epoch"


def lost_key(prefix: str) -> str:
    return f"{prefix}:state-lost"


def rebuild_needed(epochs_missing: bool, lost: bool, store_empty: bool, feedback_events: int | None) -> bool:
    """The state was lost: marked so, or a mark is missing while the interaction store is empty and
    elmo.feedback holds events to rebuild it from (`None`: the topic could not be read)."""
    return lost or (epochs_missing and store_empty and bool(feedback_events))


async def write_epochs(client: redis.Redis, prefixes: Sequence[str], by: str, **details: object) -> None:
    """Marks the state under `prefixes` whole (and no longer lost)."""
    mark = json.dumps({"at": datetime.now(UTC).isoformat(), "by": by, **details}, default=str)
    async with client.pipeline(transaction=True) as pipe:
        for prefix in dict.fromkeys(prefixes):
            pipe.set(epoch_key(prefix), mark)
            pipe.delete(lost_key(prefix))
        await pipe.execute()


class StateWatch:
    """The check of one service over its store prefixes; `writer` (the feedback-trainer) also
    writes the marks, a reader (the recommender) only reports."""

    def __init__(
        self,
        client: redis.Redis,
        prefixes: Sequence[str],
        users_key: str,
        count_feedback: Callable[[], int],
        *,
        service: str,
        writer: bool,
        interval_s: float = 15.0,
    ) -> None:
        self._client = client
        self.prefixes = list(dict.fromkeys(prefixes))
        self.users_key = users_key  # the interaction store's set of users: empty means nothing recorded
        self.count_feedback = count_feedback  # records retained on elmo.feedback (blocking: run in a thread)
        self.service = service
        self.writer = writer
        self.interval_s = interval_s
        self.needed = False
        self._started = False  # `start` ran to the end
        self._marked = False  # the marks were seen: their disappearance is a loss
        self.gauge = Gauge(
            "elmo_state_rebuild_needed", f"1 when Redis lost the learnt state that elmo.feedback can rebuild (run `{REBUILD_COMMAND}`).",
            registry=None,
        )  # fmt: skip

    @classmethod
    def from_url(
        cls, redis_url: str, bootstrap_servers: str, prefixes: Sequence[str], interactions_prefix: str, *, service: str, writer: bool,
        interval_s: float,
    ) -> StateWatch:
        from elmo.tools.feedback_log import retained_records

        return cls(
            redis.Redis.from_url(redis_url, decode_responses=True), prefixes, users_key(interactions_prefix),
            functools.partial(retained_records, bootstrap_servers, topics.FEEDBACK.name), service=service, writer=writer,
            interval_s=interval_s,
        )  # fmt: skip

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.gauge)

    async def _read(self) -> tuple[bool, bool, bool]:
        """(a mark is missing, a loss is marked, the interaction store is empty)."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.exists(*[epoch_key(p) for p in self.prefixes])
            pipe.exists(*[lost_key(p) for p in self.prefixes])
            pipe.exists(self.users_key)
            epochs, lost, users = await pipe.execute()
        return int(epochs) < len(self.prefixes), int(lost) > 0, int(users) == 0

    async def start(self) -> bool:
        """The check at start: warns and sets the gauge when a rebuild is needed; the writer marks
        a whole state (fresh, or written before the marks) so a later loss is seen."""
        missing, lost, empty = await self._read()
        events: int | None = None
        if missing and empty and not lost:
            try:
                events = await anyio.to_thread.run_sync(self.count_feedback)
            except Exception as error:  # noqa: BLE001 - no verdict is better than a service that cannot start
                log.warning(f"could not count elmo.feedback to check the learnt state: {error!r}")
        self._set(rebuild_needed(missing, lost, empty, events), events)
        wrote = False
        if not self.needed and missing and self.writer and (events is not None or not empty):
            await write_epochs(self._client, self.prefixes, self.service, reason="fresh" if empty else "state found")
            wrote = True
        self._marked = not self.needed and (not missing or wrote)
        self._started = True
        return self.needed

    async def check(self) -> bool:
        """The check while running: a mark that vanished is a loss (the writer marks it lost); marks
        back and no loss marked (a rebuild ran) clear it."""
        missing, lost, _ = await self._read()
        if self.needed:
            if not missing and not lost:
                self._set(False)
                log.info("learnt state rebuilt: the state-epoch marks are back", extra={"fields": {"service": self.service}})
                self._marked = True
        elif lost or (missing and self._marked):
            if self.writer and not lost:
                async with self._client.pipeline(transaction=False) as pipe:
                    for prefix in self.prefixes:
                        pipe.set(lost_key(prefix), datetime.now(UTC).isoformat())
                    await pipe.execute()
            self._set(True)
        elif not missing:
            self._marked = True
        return self.needed

    async def start_soon(self) -> None:
        """`start`, unless Redis is away: a service must start without it (its batches wait for
        Redis themselves); `run` then checks as soon as Redis answers."""
        try:
            await self.start()
        except redis.RedisError as error:
            log.warning(f"state check postponed, Redis unreachable: {error!r}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await (self.check() if self._started else self.start())
            except redis.RedisError as error:  # Redis away: the runtime's own checks report it
                log.debug(f"state check skipped: {error!r}")

    def _set(self, needed: bool, events: int | None = None) -> None:
        if needed and not self.needed:
            held = f"holds {events} events" if events else "holds the history"
            log.warning(
                f"Redis state is empty but elmo.feedback {held}: run `{REBUILD_COMMAND}`",
                extra={"fields": {"service": self.service, "prefixes": self.prefixes, "feedback_events": events}},
            )
        self.needed = needed
        self.gauge.set(1 if needed else 0)

    async def close(self) -> None:
        await self._client.aclose()
