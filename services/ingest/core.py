"""What ingest does with messages once a webhook is authenticated and read: no HTTP in here.

For each message: claim its platform id (a platform retry publishes once), check the sender's
rate, fetch its voice note if it has one, then publish every event of the request and wait for
Kafka's acknowledgement. Whatever could not be published is unclaimed again, so the platform's
redelivery of a 429 or 503 is processed rather than dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.exceptions
from pydantic import ValidationError

from elmo.contracts import topics
from elmo.contracts.events import BlobAudio, Channel, Feedback, FeedbackKind, InboundMessage, InlineAudio
from elmo.runtime.json_logs import event_context
from elmo.tracking_links import TrackedLink
from services.ingest.dedupe import MessageClaims, dedupe_key
from services.ingest.media import AudioStore, MediaFetchers, MediaFetchFailed
from services.ingest.messages import Parsed, PlatformMessage, is_valid_id
from services.ingest.metrics import IngestMetrics
from services.ingest.publishing import Publisher, PublishFailed
from services.ingest.rate_limit import RateLimiter

log = logging.getLogger("elmo.ingest")

CLICK_NAMESPACE = uuid.UUID("3e0f4c57-1d55-4f7a-a3c8-2b1f9e6d0c42")
# Link-preview fetchers open every URL a message carries; they are not customers clicking.
PREVIEW_AGENTS = (
    "facebookexternalhit", "facebot", "whatsapp", "telegrambot", "twitterbot", "slackbot", "discordbot",
    "linkedinbot", "skypeuripreview", "googlebot", "bingbot", "applebot",
)  # fmt: skip


class Unavailable(Exception):
    """Kafka or Redis could not be reached: nothing was published, the caller should retry (503)."""


@dataclass
class Outcome:
    published: int = 0
    duplicates: int = 0
    ignored: int = 0
    rate_limited: int = 0
    media_retry: int = 0  # voice notes to fetch again later: the platform must redeliver (503)
    media_dropped: int = 0  # voice notes that can never be fetched (too large, not audio, expired)

    @property
    def status(self) -> int:
        if self.media_retry:
            return 503
        if self.rate_limited:
            return 429
        return 200

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class _Item:
    dedupe_key: str
    rate_key: str
    channel: str
    event: InboundMessage | None = None  # ready to publish (text, or a generic event)
    message: PlatformMessage | None = None  # voice: becomes an event once its media is fetched
    claimed: bool = field(default=False)


class IngestCore:
    def __init__(
        self,
        publisher: Publisher,
        claims: MessageClaims,
        limiter: RateLimiter,
        media: MediaFetchers,
        audio_store: AudioStore,
        metrics: IngestMetrics,
    ) -> None:
        self.publisher, self.claims, self.limiter = publisher, claims, limiter
        self.media, self.audio_store, self.metrics = media, audio_store, metrics

    async def accept_platform(self, channel_label: str, parsed: Parsed) -> Outcome:
        """Messages read from a platform's webhook (text ready, voice still to fetch)."""
        outcome = Outcome(ignored=sum(parsed.ignored.values()))
        for kind, count in parsed.ignored.items():
            self.metrics.ignored(channel_label, kind, count)
        items = []
        for message in parsed.messages:
            if not is_valid_id(message.sender_id):
                self._ignore(outcome, message.channel.value, "invalid")
                continue
            item = _Item(
                dedupe_key(message.channel.value, message.account_id, message.message_id),
                f"{message.channel.value}:{message.account_id}:{message.sender_id}",
                message.channel.value,
            )
            if message.media is None:
                try:
                    item.event = message.to_event()
                except ValidationError:
                    self._ignore(outcome, item.channel, "invalid")
                    continue
            else:
                item.message = message
            items.append(item)
        return await self._accept(items, outcome)

    async def accept_events(self, events: Sequence[InboundMessage]) -> Outcome:
        """Events of the contract, as the generic endpoint receives them."""
        items = [_Item(dedupe_key("event", e.event_id), f"{e.channel.value}:{e.user_id}", e.channel.value, event=e) for e in events]
        return await self._accept(items, Outcome())

    async def _accept(self, items: list[_Item], outcome: Outcome) -> Outcome:
        try:
            await self._claim(items, outcome)
            admitted = await self._within_rate(items, outcome)
            ready = await self._with_audio(admitted, outcome)
            events = [item.event for item in ready if item.event is not None]
            if events:
                await self.publisher.publish(topics.INBOUND, events)
        except (PublishFailed, redis.exceptions.RedisError, OSError) as error:
            await self._release([item for item in items if item.claimed])
            log.error("could not publish; the caller is told to retry", extra={"fields": {"error": str(error)[:300]}})
            raise Unavailable(type(error).__name__) from error
        outcome.published = len(events)
        self.metrics.produced(len(events))
        for event in events:
            with event_context(event_id=event.event_id, conversation_id=event.conversation_id):
                log.info("published inbound message", extra={"fields": {"voice": event.audio is not None}})
        return outcome

    async def _claim(self, items: list[_Item], outcome: Outcome) -> None:
        results = await asyncio.gather(*(self.claims.claim(item.dedupe_key) for item in items), return_exceptions=True)
        for item, result in zip(items, results, strict=True):
            item.claimed = result is True
        if errors := [r for r in results if isinstance(r, BaseException)]:
            raise errors[0]  # after marking what was claimed, so the caller can release it
        claimed = [result is True for result in results]
        if duplicates := sum(1 for first in claimed if not first):
            outcome.duplicates += duplicates
            self.metrics.duplicates(duplicates)

    async def _within_rate(self, items: list[_Item], outcome: Outcome) -> list[_Item]:
        admitted = []
        for item in items:
            if not item.claimed:
                continue
            if await self.limiter.allow(item.rate_key):
                admitted.append(item)
            else:
                outcome.rate_limited += 1
                await self._release([item])
        return admitted

    async def _with_audio(self, items: list[_Item], outcome: Outcome) -> list[_Item]:
        voice = [item for item in items if item.message is not None]
        results = await asyncio.gather(*(self._fetch(item) for item in voice))
        for item, failure in zip(voice, results, strict=True):
            if failure is None:
                continue
            self.metrics.media_failed(item.channel, failure.reason, failure.retryable)
            log.warning(
                "voice note not fetched",
                extra={
                    "fields": {"channel": item.channel, "reason": failure.reason, "retryable": failure.retryable, "error": str(failure)}
                },
            )
            if failure.retryable:
                outcome.media_retry += 1
                await self._release([item])
            else:
                outcome.media_dropped += 1  # stays claimed: a redelivery would fail the same way
        return [item for item in items if item.event is not None]

    async def _fetch(self, item: _Item) -> MediaFetchFailed | None:
        message = item.message
        assert message is not None and message.media is not None
        started = time.perf_counter()
        try:
            media = await self.media.fetch(message.media)
            audio: InlineAudio | BlobAudio = await self.audio_store.keep(media)
            item.event = message.to_event(audio)
        except MediaFetchFailed as failure:
            return failure
        except ValidationError as error:
            return MediaFetchFailed("invalid", f"not a valid inbound message: {error.error_count()} problems", retryable=False)
        self.metrics.media_fetched(item.channel, time.perf_counter() - started)
        self.metrics.audio_stored("inline" if isinstance(audio, InlineAudio) else "blob")
        return None

    async def _release(self, items: list[_Item]) -> None:
        for item in items:
            item.claimed = False
        results = await asyncio.gather(*(self.claims.release(item.dedupe_key) for item in items), return_exceptions=True)
        if failed := [r for r in results if isinstance(r, BaseException)]:
            # The key expires with its TTL; until then a redelivery is taken for a duplicate.
            log.error("could not release dedupe claims", extra={"fields": {"count": len(failed), "error": repr(failed[0])[:200]}})

    def _ignore(self, outcome: Outcome, channel: str, kind: str) -> None:
        outcome.ignored += 1
        self.metrics.ignored(channel, kind)

    # --- tracking links ------------------------------------------------------------------------

    async def record_click(self, link: TrackedLink, user_agent: str | None, wait_s: float) -> str:
        """Publish the click of a tracking link; returns the redirect outcome for the metric."""
        agent = (user_agent or "").lower()
        if any(marker in agent for marker in PREVIEW_AGENTS):
            return "preview"
        try:
            channel = Channel(link.channel)
        except ValueError:
            channel = Channel.OTHER
        click = Feedback(
            # One click per shown recommendation: repeated clicks share an id, so the chain counts one.
            event_id=uuid.uuid5(CLICK_NAMESPACE, link.tracking_id).hex,
            conversation_id=link.conversation_id,
            user_id=link.user_id,
            channel=channel,
            kind=FeedbackKind.RECOMMENDATION_CLICKED,
            tracking_id=link.tracking_id,
            item_id=link.item_id,
        )
        try:
            async with asyncio.timeout(wait_s):
                await self.publisher.publish(topics.FEEDBACK, [click])
        except (PublishFailed, TimeoutError) as error:
            # The customer still gets where they were going; the click is lost and counted.
            log.error("click not recorded", extra={"fields": {"tracking_id": link.tracking_id, "error": str(error)[:200]}})
            return "feedback_lost"
        return "redirected"
