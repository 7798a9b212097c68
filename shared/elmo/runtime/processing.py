"""One batch of records through a stage: decode, skip what was handled, run the core, publish.

This is the runtime's behaviour without Kafka: a unit test feeds it `ConsumedRecord`s and reads
what it hands to the `Publish` callable. The Kafka shell (`elmo.runtime.app`) commits offsets only
after `handle` returns, so every output is acknowledged before its input is marked consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio.to_thread

from elmo.contracts.codec import UndecodableRecord, decode, encode
from elmo.contracts.events import Event
from elmo.contracts.topics import Topic
from elmo.runtime.dead_letters import dead_letter_record
from elmo.runtime.failures import DependencyUnavailable, is_transient
from elmo.runtime.idempotency import SeenEvents
from elmo.runtime.json_logs import event_context
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.records import ConsumedRecord, OutgoingRecord
from elmo.runtime.stage import CoreResult, RejectedInput, Routed, Stage, call_hook

log = logging.getLogger("elmo.runtime")

Publish = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]
# Marks records whose outputs are durable, so their offsets may be committed.
Commit = Callable[[Sequence[ConsumedRecord]], Awaitable[None]]


class ServiceDiedWhileHandling(Exception):
    """The service stopped (killed, crashed, out of memory) each time it handled this event."""

# Output ids are a function of (service, input id, position): reprocessing an input after a crash
# yields the same ids, which the next stage recognises as already handled.
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c2a0e-6a43-4d4c-9b7e-0d7d2e4c9a11")


def output_event_id(service: str, input_event_id: str, position: int) -> str:
    return uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{service}/{input_event_id}/{position}").hex


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)


@dataclass
class _Pending:
    record: ConsumedRecord
    event: Event


class BatchProcessor:
    def __init__(
        self,
        stage: Stage,
        publish: Publish,
        seen: SeenEvents,
        metrics: ServiceMetrics,
        retry: RetryPolicy = RetryPolicy(),
        max_record_bytes: int | None = None,
        max_crashes: int = 3,
    ) -> None:
        self.stage = stage
        self.publish = publish
        self.seen = seen
        self.metrics = metrics
        self.retry = retry
        self.max_record_bytes = max_record_bytes
        self.max_crashes = max_crashes

    async def handle(self, records: Sequence[ConsumedRecord], commit: Commit | None = None) -> None:
        """Handle a batch; raises only when the outcome could not be made durable (then retry it).

        A dependency's transient failure inside the core (Redis or Kafka unreachable, a timeout)
        raises `DependencyUnavailable` rather than dead-lettering anything: the record is fine.

        `commit(records)` (the consumer's offset commit) runs once their outputs are acknowledged,
        side by side with remembering the handled ids: either order is safe, since a committed
        batch is not redelivered and a remembered one is skipped if it is.

        A batch with an event that was being handled when the service died (started before and
        never finished) is handled one event at a time, each committed on its own, so the event
        that kills the service is found; once it has been started more than `max_crashes` times
        it is dead-lettered without being run again.
        """
        started = time.perf_counter()
        self.metrics.consumed(len(records))
        outgoing: list[OutgoingRecord] = []

        decoded = self._decode(records, outgoing)
        pending, starts = await self._skip_handled(decoded)
        try:
            if len(pending) > 1 and max(starts) > 1:
                log.warning("an event of this batch was in flight when the service stopped; handling one at a time",
                            extra={"fields": {"size": len(pending), "most_starts": max(starts)}})  # fmt: skip
                await self._handle_one_at_a_time(records, decoded, pending, starts, outgoing, commit)
            else:
                await self._finish(records, decoded, pending, starts, outgoing, commit)
        except Exception:
            # Not a death: a rewind or a failed publish does not count as a start.
            if pending:
                with contextlib.suppress(Exception):
                    await self.seen.unstart([p.event.event_id for p in pending])
            raise
        self.metrics.batch(len(records), time.perf_counter() - started)

    async def _finish(
        self,
        records: Sequence[ConsumedRecord],
        decoded: list[_Pending],
        pending: list[_Pending],
        starts: list[int],
        outgoing: list[OutgoingRecord],
        commit: Commit | None,
    ) -> None:
        handled: list[str] = []
        dead_lettered: list[str] = []  # not remembered: a replay of the letter after a fix runs them
        if len(pending) == 1 and starts[0] > self.max_crashes:
            outgoing.append(self._crashed(pending[0], starts[0]))
            dead_lettered.append(pending[0].event.event_id)
        elif pending:
            results = await self._run_core([p.event for p in pending])
            dead_letters = self.stage.dead_letters.name
            for item, result in zip(pending, results, strict=True):
                produced = self._outputs_or_dead_letter(item, result)
                outgoing.extend(produced)
                failed = any(r.topic == dead_letters for r in produced)
                (dead_lettered if failed else handled).append(item.event.event_id)

        if outgoing:
            await self.publish(outgoing)
        if self.stage.after_batch is not None and decoded:
            await call_hook(self.stage.after_batch, [d.event for d in decoded])
        finishing = [self.seen.remember(handled)] if handled else []
        if dead_lettered:
            finishing.append(self.seen.release(dead_lettered))
        if commit is not None:
            finishing.append(commit(records))
        await asyncio.gather(*finishing)
        self._count_published(outgoing)

    async def _handle_one_at_a_time(
        self,
        records: Sequence[ConsumedRecord],
        decoded: list[_Pending],
        pending: list[_Pending],
        starts: list[int],
        outgoing: list[OutgoingRecord],
        commit: Commit | None,
    ) -> None:
        # Dead letters of undecodable records first: later commits may pass their offsets.
        if outgoing:
            await self.publish(outgoing)
            self._count_published(outgoing)
        for index, item in enumerate(pending):
            # Events before the first one were finished in earlier rounds, so the first one is the
            # event the service died on; later ones were only in the same batch.
            await self._finish([item.record], [item], [item], [starts[index] if index == 0 else 1], [], commit)
        if commit is not None:
            await commit(records)
        if self.stage.after_batch is not None and len(decoded) > len(pending):
            handled_before = [d for d in decoded if d not in pending]
            await call_hook(self.stage.after_batch, [d.event for d in handled_before])

    def _crashed(self, item: _Pending, starts: int) -> OutgoingRecord:
        error = ServiceDiedWhileHandling(
            f"the service stopped {starts - 1} times while handling this event (limit ELMO_MAX_CRASHES={self.max_crashes}); "
            "it was dead-lettered without being run again"
        )
        log.error("dead-lettering an event the service keeps dying on", extra={"fields": {"event_id": item.event.event_id, "starts": starts}})
        return self._dead_letter(item.record, "processing_failed", error, attempts=starts - 1, event_id=item.event.event_id)

    def _count_published(self, outgoing: Sequence[OutgoingRecord]) -> None:
        produced = 0
        dead_letters = self.stage.dead_letters.name
        for record in outgoing:
            if record.topic != dead_letters:
                produced += 1
                if record.latency_s is not None:
                    self.metrics.end_to_end(record.latency_s)
            else:
                self.metrics.dead_lettered(record.headers.get("elmo.dlq.reason", "unknown"))
        self.metrics.produced(produced)

    def _decode(self, records: Sequence[ConsumedRecord], outgoing: list[OutgoingRecord]) -> list[_Pending]:
        pending: list[_Pending] = []
        for record in records:
            try:
                event = decode(record.value, self.stage.input_type, self.max_record_bytes)
            except Exception as error:  # noqa: BLE001 - whatever a record does to the decoder, it is that record's
                reason = error.reason if isinstance(error, UndecodableRecord) else "malformed"
                log.warning(
                    "dead-lettering undecodable record",
                    extra={"fields": {"reason": reason, "error": str(error)[:300], "partition": record.partition, "offset": record.offset}},
                )
                outgoing.append(self._dead_letter(record, reason, error))
                continue
            pending.append(_Pending(record, event))
        return pending

    async def _skip_handled(self, pending: list[_Pending]) -> tuple[list[_Pending], list[int]]:
        """The events not handled before, and how often each has now been started."""
        handled, starts = await self.seen.start([p.event.event_id for p in pending])
        fresh: list[_Pending] = []
        fresh_starts: list[int] = []
        in_batch: set[str] = set()
        for item, was_handled, count in zip(pending, handled, starts, strict=True):
            if was_handled or item.event.event_id in in_batch:
                continue
            in_batch.add(item.event.event_id)
            fresh.append(item)
            fresh_starts.append(count)
        if skipped := len(pending) - len(fresh):
            self.metrics.duplicates(skipped)
        return fresh, fresh_starts

    async def _run_core(self, events: list[Event]) -> list[CoreResult | BaseException]:
        """The whole batch in one call; if that fails, each event alone, with retries."""
        try:
            results = list(await self._call_core(events))
        except Exception as error:  # noqa: BLE001 - any core failure is isolated per event below
            self.metrics.failed()
            if is_transient(error):
                raise DependencyUnavailable(error) from error
            if len(events) == 1 and isinstance(error, RejectedInput):
                return [error]
            log.warning("batch failed, isolating events", extra={"fields": {"error": repr(error)[:300], "size": len(events)}})
            return [await self._run_one_with_retries(event) for event in events]
        # A core may hand back an exception per input; a dependency's failure is still not the input's.
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, RejectedInput) and is_transient(result):
                raise DependencyUnavailable(result) from result
        return results

    async def _run_one_with_retries(self, event: Event) -> CoreResult | BaseException:
        with event_context(event_id=event.event_id, conversation_id=event.conversation_id):
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    (result,) = await self._call_core([event])
                    if isinstance(result, BaseException) and not isinstance(result, RejectedInput) and is_transient(result):
                        raise DependencyUnavailable(result) from result
                    return result
                except DependencyUnavailable:
                    raise
                except RejectedInput as error:
                    self.metrics.failed()
                    return error
                except Exception as error:  # noqa: BLE001 - retried, then dead-lettered with its class
                    self.metrics.failed()
                    if is_transient(error):
                        raise DependencyUnavailable(error) from error
                    if attempt == self.retry.max_attempts:
                        log.error("processing failed after retries", exc_info=error)
                        return error
                    await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def _call_core(self, events: list[Event]) -> Sequence[CoreResult]:
        if self.stage.runs_in_thread:
            results = await anyio.to_thread.run_sync(self.stage.process_batch, events)
        else:
            results = await self.stage.process_batch(events)  # type: ignore[misc]
        if len(results) != len(events):
            raise RuntimeError(f"core of {self.stage.name} returned {len(results)} results for {len(events)} events")
        return results

    def _outputs_or_dead_letter(self, item: _Pending, result: CoreResult | BaseException) -> list[OutgoingRecord]:
        if isinstance(result, BaseException):
            # A core may also return an exception for one input of a batch (the rest succeed):
            # a RejectedInput is final; anything else was the last of the retries.
            reason = "rejected" if isinstance(result, RejectedInput) else "processing_failed"
            attempts = 1 if isinstance(result, RejectedInput) else self.retry.max_attempts
            return [self._dead_letter(item.record, reason, result, attempts=attempts, event_id=item.event.event_id)]
        if result is None:
            return []
        outputs = [result] if isinstance(result, Event | Routed) else list(result)
        routed = [(o.topic, o.event) if isinstance(o, Routed) else (self.stage.emits, o) for o in outputs]
        if stray := [topic.name for topic, _ in routed if topic not in self.stage.output_topics]:
            error = RuntimeError(f"core of {self.stage.name} routed an output to {', '.join(stray)}, not one of its topics")
            return [self._dead_letter(item.record, "processing_failed", error, event_id=item.event.event_id)]
        return [self._output(item.event, position, topic, event) for position, (topic, event) in enumerate(routed)]

    def _output(self, source: Event, position: int, topic: Topic, event: Event) -> OutgoingRecord:
        event = event.model_copy(update={"event_id": output_event_id(self.stage.name, source.event_id, position)})
        return OutgoingRecord(
            topic=topic.name,
            key=event.key,
            value=encode(event),
            headers={
                "elmo.event_type": event.event_type,
                "elmo.schema_version": str(event.schema_version),
                "elmo.origin_event_id": event.origin_event_id,
                "elmo.producer": self.stage.name,
            },
            latency_s=event.latency_seconds(),
        )

    def _dead_letter(
        self,
        record: ConsumedRecord,
        reason: str,
        error: BaseException,
        attempts: int = 1,
        event_id: str | None = None,
    ) -> OutgoingRecord:
        return dead_letter_record(
            service=self.stage.name,
            dead_letter_topic=self.stage.dead_letters.name,
            record=record,
            reason=reason,
            error=error,
            attempts=attempts,
            event_id=event_id,
        )
