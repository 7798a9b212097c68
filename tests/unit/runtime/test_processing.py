"""The runtime's batch behaviour without a broker: what reaches the publisher for given records."""

import json

import aiokafka.errors
import pytest
import redis.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elmo.contracts.events import InboundMessage, Utterance
from elmo.contracts.topics import Topic
from elmo.runtime.dead_letters import MAX_DEAD_LETTER_BYTES
from elmo.runtime.failures import DependencyUnavailable
from elmo.runtime.idempotency import InMemorySeenEvents
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.processing import BatchProcessor, RetryPolicy, output_event_id
from elmo.runtime.records import ConsumedRecord
from elmo.runtime.stage import RejectedInput, Routed, Stage

IN, OUT = Topic("test.in", ""), Topic("test.out", "")


def inbound(event_id: str, text: str, conversation: str = "c1") -> bytes:
    return json.dumps({"event_id": event_id, "conversation_id": conversation, "user_id": "u1", "channel": "web", "text": text}).encode()


def records(*values: bytes) -> list[ConsumedRecord]:
    return [ConsumedRecord(IN.name, 0, offset, b"c1", value) for offset, value in enumerate(values)]


class Collector:
    def __init__(self, fail_times: int = 0) -> None:
        self.published = []
        self.fail_times = fail_times

    async def __call__(self, outgoing):
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker unreachable")
        self.published.extend(outgoing)

    def on(self, topic: str):
        return [r for r in self.published if r.topic == topic]


def echo_core(events):
    results = []
    for event in events:
        if event.text == "boom":
            raise RuntimeError("core exploded")
        if event.text == "corrupt":
            raise RejectedInput("cannot use this input")
        results.append(None if event.text == "skip" else event.derive(Utterance, text=event.text.upper(), source="text"))
    return results


def make(core=echo_core, publish=None, seen=None):
    stage = Stage("echo", IN, OUT, InboundMessage, core)
    publish = publish or Collector()
    processor = BatchProcessor(stage, publish, seen or InMemorySeenEvents(), ServiceMetrics("echo"), RetryPolicy(3, 0, 0))
    return processor, publish


async def test_outputs_keep_order_lineage_and_get_deterministic_ids():
    processor, out = make()
    await processor.handle(records(inbound("a", "one"), inbound("b", "two"), inbound("c", "three")))
    published = out.on(OUT.name)
    values = [json.loads(r.value) for r in published]
    assert [v["text"] for v in values] == ["ONE", "TWO", "THREE"]
    assert [v["parent_event_id"] for v in values] == ["a", "b", "c"]
    assert values[0]["event_id"] == output_event_id("echo", "a", 0)
    assert all(r.key == b"c1" for r in published)
    assert published[0].headers["elmo.origin_event_id"] == "a"


async def test_redelivered_and_repeated_events_produce_one_output():
    processor, out = make()
    await processor.handle(records(inbound("a", "one"), inbound("a", "one")))
    await processor.handle(records(inbound("a", "one")))
    assert len(out.on(OUT.name)) == 1


async def test_bad_records_are_dead_lettered_with_reasons_and_the_rest_flow():
    processor, out = make()
    await processor.handle(
        records(
            b"{oops",
            inbound("a", "one"),
            b'{"schema_version": 7, "conversation_id": "c1", "user_id": "u", "channel": "web", "text": "x"}',
            inbound("b", "boom"),
            inbound("c", "corrupt"),
            inbound("d", "two"),
        )
    )
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE", "TWO"]
    letters = out.on("elmo.dlq.echo")
    reasons = [r.headers["elmo.dlq.reason"] for r in letters]
    assert reasons == ["malformed", "unsupported_schema_version", "processing_failed", "rejected"]
    boom = letters[2]
    assert boom.headers["elmo.dlq.original.topic"] == IN.name
    assert boom.headers["elmo.dlq.original.offset"] == "3"
    assert boom.headers["elmo.dlq.exception.class"] == "builtins.RuntimeError"
    assert boom.headers["elmo.dlq.attempts"] == "3"
    body = json.loads(boom.value)
    assert json.loads(body["original_value"])["event_id"] == "b"
    assert body["error_message"] == "core exploded"


async def test_failures_of_a_record_are_retried_before_giving_up():
    calls = {"n": 0}

    def flaky(events):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("a bug this record triggers, twice")
        return echo_core(events)

    processor, out = make(core=flaky)
    await processor.handle(records(inbound("a", "one")))
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE"]
    assert not out.on("elmo.dlq.echo")


@pytest.mark.parametrize(
    "outage",
    [
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        aiokafka.errors.KafkaConnectionError("Unable to bootstrap"),
        TimeoutError("model server busy"),
    ],
    ids=["redis-down", "redis-timeout", "kafka-down", "timeout"],
)
async def test_a_dependency_outage_rewinds_the_batch_and_dead_letters_nothing(outage):
    down = {"now": True}

    def needs_redis(events):
        if down["now"]:
            raise RuntimeError("dialogue state unavailable") from outage  # wrapped, as cores do
        return echo_core(events)

    seen = InMemorySeenEvents()
    processor, out = make(core=needs_redis, seen=seen)
    batch = records(inbound("a", "one"), inbound("b", "two"))
    with pytest.raises(DependencyUnavailable):
        await processor.handle(batch)
    assert out.published == [] and not seen.handled  # nothing dead-lettered, nothing marked handled

    down["now"] = False  # the dependency is back: the rewound batch is read again
    await processor.handle(batch)
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE", "TWO"]
    assert not out.on("elmo.dlq.echo")


async def test_a_core_returning_an_outage_for_one_input_rewinds_too():
    def per_input(events):
        return [redis.exceptions.ConnectionError("gone") if e.text == "two" else echo_core([e])[0] for e in events]

    processor, out = make(core=per_input)
    with pytest.raises(DependencyUnavailable):
        await processor.handle(records(inbound("a", "one"), inbound("b", "two")))
    assert out.published == []


POISON = [
    b'{"n": ' + b"1" * 5000 + b"}",  # int() refuses over 4,300 digits: ValueError, not JSONDecodeError
    b"[" * 100_000 + b"]" * 100_000,  # RecursionError
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"\xff\xfe\x00garbage",
    b'{"conversation_id": "c\x00", "user_id": "u1", "channel": "web", "text": "raw NUL"}',
    b'{"conversation_id": "c1", "user_id": "u1", "channel": "web", "text": "escaped NUL \\u0000"}',
    b'{"conversation_id": 5, "user_id": ["u"], "channel": {}, "text": 1e999}',
    b'{"conversation_id": "c1", "user_id": "u1", "channel": "web", "text": "x", "schema_version": {"v": 1}}',
    b"[1, 2, 3]",
    b'"just a string"',
    b"",
    b"null",
    b" " * 2_000_000,  # over the size budget
]


async def test_poison_records_are_dead_lettered_and_the_rest_of_the_batch_flows():
    processor, out = make()
    processor.max_record_bytes = 1024 * 1024
    values = [inbound("good-1", "first")] + POISON + [inbound("good-2", "second")]
    await processor.handle(records(*values))

    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["FIRST", "SECOND"]
    letters = out.on("elmo.dlq.echo")
    assert len(letters) == len(POISON)
    reasons = [r.headers["elmo.dlq.reason"] for r in letters]
    assert set(reasons) <= {"malformed", "invalid", "too_large"}
    assert reasons[-1] == "too_large"
    for letter in letters:
        assert len(letter.value) <= MAX_DEAD_LETTER_BYTES
        body = json.loads(letter.value)
        assert body["error_message"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
            max_leaves=20,
        ).map(lambda doc: json.dumps(doc).encode()),
        st.fixed_dictionaries(
            {"conversation_id": st.text(max_size=10), "user_id": st.text(max_size=10), "channel": st.text(max_size=10)},
            optional={"text": st.text(max_size=30), "schema_version": st.integers(), "event_id": st.text(max_size=10)},
        ).map(lambda doc: json.dumps(doc).encode()),
    )
)
async def test_fuzzed_values_never_stop_the_batch(value):
    processor, out = make()
    await processor.handle(records(inbound("good-1", "first"), value, inbound("good-2", "second")))
    texts = [json.loads(r.value)["text"] for r in out.on(OUT.name)]
    assert texts[0] == "FIRST" and texts[-1] == "SECOND"
    assert len(out.published) == 3  # the fuzzed value became an output or a dead letter, never nothing


async def test_a_batch_that_cannot_be_published_is_not_remembered():
    seen = InMemorySeenEvents()
    processor, out = make(publish=Collector(fail_times=1), seen=seen)
    with pytest.raises(ConnectionError):
        await processor.handle(records(inbound("a", "one")))
    assert not seen.handled
    await processor.handle(records(inbound("a", "one")))
    assert len(out.on(OUT.name)) == 1 and seen.handled == {"a"}


async def test_skipped_inputs_are_remembered_but_emit_nothing():
    seen = InMemorySeenEvents()
    processor, out = make(seen=seen)
    await processor.handle(records(inbound("a", "skip")))
    assert out.published == [] and seen.handled == {"a"}


async def test_async_cores_run_on_the_event_loop():
    async def core(events):
        return [e.derive(Utterance, text=e.text, source="text") for e in events]

    processor, out = make(core=core)
    assert not processor.stage.runs_in_thread
    await processor.handle(records(inbound("a", "x")))
    assert len(out.on(OUT.name)) == 1


async def test_a_core_returning_the_wrong_number_of_results_is_a_failure_not_a_silent_loss():
    processor, out = make(core=lambda events: [])
    await processor.handle(records(inbound("a", "x")))
    assert [r.headers["elmo.dlq.reason"] for r in out.on("elmo.dlq.echo")] == ["processing_failed"]


async def test_a_core_can_reject_one_input_of_a_batch_without_failing_the_others():
    calls = []

    def core(events):
        calls.append(len(events))
        return [RejectedInput("corrupt audio") if e.text == "bad" else e.derive(Utterance, text=e.text, source="text") for e in events]

    processor, out = make(core=core)
    await processor.handle(records(inbound("a", "ok"), inbound("b", "bad"), inbound("c", "fine")))
    assert calls == [3]
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ok", "fine"]
    assert [r.headers["elmo.dlq.reason"] for r in out.on("elmo.dlq.echo")] == ["rejected"]


@pytest.mark.parametrize("failure", ["bug", "rejected"])
async def test_a_dead_lettered_event_replayed_after_the_fix_is_handled(failure):
    """What `elmo dlq replay` relies on: a dead-lettered event is not remembered as handled, so the
    same record read again once the cause is fixed (a deploy, the blob arrived) makes its output."""
    fixed = {"now": False}

    def core(events):
        if not fixed["now"]:
            return [RuntimeError("a bug this record triggers") if failure == "bug" else RejectedInput("blob not found") for _ in events]
        return echo_core(events)

    seen = InMemorySeenEvents()
    processor, out = make(core=core, seen=seen)
    batch = records(inbound("a", "one"))
    await processor.handle(batch)
    assert [r.headers["elmo.dlq.reason"] for r in out.on("elmo.dlq.echo")] == ["processing_failed" if failure == "bug" else "rejected"]
    assert not seen.handled and not seen.starts

    fixed["now"] = True
    await processor.handle(batch)  # the replayed original
    await processor.handle(batch)  # and once more: now it was handled, so it is skipped
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE"]
    assert seen.handled == {"a"} and len(out.on("elmo.dlq.echo")) == 1


SIDE = Topic("test.side", "")


async def test_a_core_can_route_outputs_to_the_stages_other_topics_and_nowhere_else():
    def core(events):
        return [Routed(SIDE if e.text == "side" else OUT, e.derive(Utterance, text=e.text, source="text")) for e in events]

    stage = Stage("echo", IN, OUT, InboundMessage, core, also_emits=(SIDE,))
    out = Collector()
    processor = BatchProcessor(stage, out, InMemorySeenEvents(), ServiceMetrics("echo"), RetryPolicy(3, 0, 0))
    await processor.handle(records(inbound("a", "main"), inbound("b", "side")))
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["main"]
    assert [json.loads(r.value)["text"] for r in out.on(SIDE.name)] == ["side"]

    stray = Stage("echo", IN, OUT, InboundMessage, core)  # SIDE not declared
    out = Collector()
    processor = BatchProcessor(stray, out, InMemorySeenEvents(), ServiceMetrics("echo"), RetryPolicy(3, 0, 0))
    await processor.handle(records(inbound("c", "side"), inbound("d", "main")))
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["main"]
    (dead,) = out.on("elmo.dlq.echo")
    assert dead.headers["elmo.dlq.reason"] == "processing_failed" and SIDE.name in dead.headers["elmo.dlq.exception.message"]


async def test_after_batch_sees_every_decoded_input_once_outputs_are_published():
    seen_after: list[list[str]] = []
    out = Collector()

    async def after(events):
        # Runs after publishing: the batch's outputs are already there.
        seen_after.append([e.event_id for e in events])
        assert len(out.published) >= 1

    stage = Stage("echo", IN, OUT, InboundMessage, echo_core, after_batch=after)
    processor = BatchProcessor(stage, out, InMemorySeenEvents(), ServiceMetrics("echo"), RetryPolicy(3, 0, 0))
    await processor.handle(records(inbound("a", "x"), inbound("b", "corrupt"), b"not json"))
    await processor.handle(records(inbound("a", "x")))  # a duplicate is still reported: its work is done
    assert seen_after == [["a", "b"], ["a"]]


async def test_a_failing_after_batch_hook_leaves_the_batch_unremembered_for_redelivery():
    async def after(events):
        raise ConnectionError("redis unreachable")

    seen = InMemorySeenEvents()
    stage = Stage("echo", IN, OUT, InboundMessage, echo_core, after_batch=after)
    processor = BatchProcessor(stage, Collector(), seen, ServiceMetrics("echo"), RetryPolicy(3, 0, 0))
    with pytest.raises(ConnectionError):
        await processor.handle(records(inbound("a", "x")))
    assert seen.handled == set()


class ServiceDied(BaseException):
    """Stands in for kill -9 / a segfault: not an Exception, so nothing in the runtime handles it."""


async def test_an_event_the_service_keeps_dying_on_is_dead_lettered_and_its_batch_mates_are_answered():
    def killed_by_poison(events):
        if any(e.text == "kills the service" for e in events):
            raise ServiceDied()
        return echo_core(events)

    seen = InMemorySeenEvents()
    processor, out = make(core=killed_by_poison, seen=seen)
    committed = []

    async def commit(done):
        committed.extend(r.offset for r in done)

    batch = records(inbound("a", "one"), inbound("p", "kills the service"), inbound("b", "two"))
    rounds = 0
    while True:  # the service is restarted after each death, and reads the same batch again
        rounds += 1
        try:
            await processor.handle(batch, commit=commit)
            break
        except ServiceDied:
            assert rounds < 10, "the poison event was never dead-lettered"

    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE", "TWO"]
    (letter,) = out.on("elmo.dlq.echo")
    body = json.loads(letter.value)
    assert body["original_event_id"] == "p" and body["error_class"].endswith("ServiceDiedWhileHandling")
    assert rounds == 4  # died in the batch, then twice alone, then dead-lettered
    assert sorted(set(committed)) == [0, 1, 2]
    # Handled ones are remembered and keep no count; the dead-lettered one is not remembered (a
    # replay of its letter after a fix runs it) and its count is gone (it starts afresh).
    assert seen.handled == {"a", "b"} and "p" not in seen.starts and "b" not in seen.starts


async def test_a_rewind_is_not_counted_as_a_death():
    down = {"now": True}

    def needs_redis(events):
        if down["now"]:
            raise redis.exceptions.ConnectionError("gone")
        return echo_core(events)

    seen = InMemorySeenEvents()
    processor, out = make(core=needs_redis, seen=seen)
    batch = records(inbound("a", "one"), inbound("b", "two"))
    for _ in range(10):
        with pytest.raises(DependencyUnavailable):
            await processor.handle(batch)
    assert max(seen.starts.values()) == 0
    down["now"] = False
    await processor.handle(batch)
    assert [json.loads(r.value)["text"] for r in out.on(OUT.name)] == ["ONE", "TWO"] and not out.on("elmo.dlq.echo")
