"""delivery's core: send each reply through its channel's sender, once, and report what was shown.

Replies of one conversation are sent in order, one after the other; conversations go side by
side. A reply's result is the `recommendation_viewed` feedback of each recommendation it carried
(what the recommender learns views from), `None` when its channel has no sender, a
`RejectedInput` when the platform refused it (no retry: dead-lettered at once), or `SendFailed`
when the platform stayed unavailable through every retry (dead-lettered, to replay later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from elmo.contracts.events import Channel, Feedback, FeedbackKind, Reply
from elmo.runtime.json_logs import event_context
from elmo.runtime.stage import RejectedInput
from services.delivery.claims import Claim, SendClaims
from services.delivery.metrics import DeliveryMetrics
from services.delivery.rendering import render
from services.delivery.senders import Sender, SendRefused, SendUnavailable

log = logging.getLogger("elmo.delivery")

Result = list[Feedback] | BaseException | None


class SendFailed(Exception):
    """The platform stayed unavailable through every try."""


@dataclass(frozen=True)
class SendPolicy:
    attempts: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    lease_s: float = 60.0  # longest a send with all its retries can take
    poll_s: float = 0.5  # how often to look again at a reply another attempt is sending

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        return min(max(self.backoff_s * 2 ** (attempt - 1), retry_after_s or 0.0), self.backoff_max_s)


def views(reply: Reply) -> list[Feedback]:
    return [
        reply.derive(
            Feedback,
            kind=FeedbackKind.RECOMMENDATION_VIEWED,
            tracking_id=recommendation.tracking_id,
            item_id=recommendation.item_id,
            reply_event_id=reply.event_id,
        )
        for recommendation in reply.recommendations
    ]


class DeliveryCore:
    def __init__(self, senders: Mapping[Channel, Sender], claims: SendClaims, metrics: DeliveryMetrics, policy: SendPolicy) -> None:
        self.senders, self.claims, self.metrics, self.policy = senders, claims, metrics, policy
        # Sent, but the "sent" mark could not be written (Redis blip): the retry only writes it.
        self._sent_unmarked: set[str] = set()

    async def deliver_batch(self, replies: Sequence[Reply]) -> list[Result]:
        results: list[Result] = [None] * len(replies)
        by_conversation: dict[str, list[int]] = defaultdict(list)
        for index, reply in enumerate(replies):
            by_conversation[reply.conversation_id].append(index)

        async def in_order(indices: list[int]) -> None:
            for index in indices:
                results[index] = await self.deliver(replies[index])

        # Every conversation finishes before a failure (Redis unreachable, say) is raised: the
        # runtime then retries replies one by one, and a send still running in the background
        # would race its own retry.
        outcomes = await asyncio.gather(*(in_order(indices) for indices in by_conversation.values()), return_exceptions=True)
        if errors := [outcome for outcome in outcomes if isinstance(outcome, BaseException)]:
            raise errors[0]
        return results

    async def deliver(self, reply: Reply) -> Result:
        sender = self.senders.get(reply.channel)
        if sender is None:
            self.metrics.skipped(reply.channel.value, "no_sender")
            return None
        with event_context(event_id=reply.event_id, conversation_id=reply.conversation_id):
            if reply.event_id in self._sent_unmarked:
                await self.claims.mark_sent(reply.event_id)
                self._sent_unmarked.discard(reply.event_id)
                return views(reply)
            claim = await self._claim(reply)
            if isinstance(claim, RejectedInput):
                return claim
            if claim.state == "sent":
                self.metrics.skipped(reply.channel.value, "already_sent")
                log.info("reply already sent; not sending it again")
                return views(reply)  # same output ids as the first time: the next stage drops duplicates
            # Cancelled mid-send (shutdown past its grace), the claim stays: the outcome is unknown.
            try:
                await self._send_with_retries(sender, reply)
            except SendRefused as error:
                await self.claims.release(reply.event_id, claim)  # nothing was sent: a fixed replay may send
                log.warning("platform refused the reply", extra={"fields": {"error": str(error)}})
                return RejectedInput(str(error))
            except SendUnavailable as error:
                await self.claims.release(reply.event_id, claim)
                log.error("platform unavailable through every try", extra={"fields": {"error": str(error)}})
                return SendFailed(f"{error} (after {self.policy.attempts} tries)")
            self._sent_unmarked.add(reply.event_id)
            await self.claims.mark_sent(reply.event_id)
            self._sent_unmarked.discard(reply.event_id)
            self.metrics.sent(reply.channel.value)
            log.info("reply sent", extra={"fields": {"channel": reply.channel.value, "recommendations": len(reply.recommendations)}})
            return views(reply)

    async def _claim(self, reply: Reply) -> Claim | RejectedInput:
        """Our claim, or "sent"; waits while another attempt may still be sending."""
        while True:
            claim = await self.claims.claim(reply.event_id)
            if claim.state != "in_flight":
                return claim
            claimed_at = claim.claimed_at or 0.0
            remaining = claimed_at + self.policy.lease_s - time.time()
            if remaining <= 0:
                since = datetime.fromtimestamp(claimed_at, UTC).isoformat(timespec="seconds")
                return RejectedInput(
                    f"an attempt to send this reply started at {since} and never confirmed it; it may have reached "
                    "the customer, so it is not sent again (replay it from the dead-letter topic after checking)"
                )
            await asyncio.sleep(min(self.policy.poll_s, remaining))

    async def _send_with_retries(self, sender: Sender, reply: Reply) -> None:
        text = render(reply, sender.max_chars)
        channel = reply.channel.value
        for attempt in range(1, self.policy.attempts + 1):
            started = time.perf_counter()
            try:
                await sender.send(reply.user_id, text)
            except SendRefused:
                self.metrics.attempt(channel, "refused", time.perf_counter() - started)
                raise
            except SendUnavailable as error:
                self.metrics.attempt(channel, "unavailable", time.perf_counter() - started)
                if attempt == self.policy.attempts:
                    raise
                delay = self.policy.delay(attempt, error.retry_after_s)
                log.warning("send failed; trying again", extra={"fields": {"attempt": attempt, "delay_s": delay, "error": str(error)}})
                await asyncio.sleep(delay)
            else:
                self.metrics.attempt(channel, "ok", time.perf_counter() - started)
                return
