"""`elmo state rebuild`'s pure parts: what --since and --what mean, the replay's order, the reply
index's expiries, and what the registry's fine-tunes took from the corrections. (The replay on Redis,
equal to live processing: tests/integration/feedback/test_state_rebuild_on_redis.py; after a wipe
of a running chain: tests/chaos/test_redis_wipe.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from elmo.contracts.events import Channel, Reply
from elmo.learning.corrections import INTENT, SENTIMENT, Correction
from elmo.models.artifacts import ArtifactStore
from elmo.tools.feedback_log import LogRecord
from elmo.tools.state_rebuild import (
    PARTS, FineTune, _ReplyClock, fine_tunes_of, in_time_order, parse_parts, parse_since, recent_of, taken_by_fine_tunes,
)  # fmt: skip

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_since_is_a_duration_before_now_an_iso_time_or_everything() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("12h", NOW) == NOW - timedelta(hours=12)
    assert parse_since("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2026-11-30T08:00:00Z", NOW) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert parse_since("2026-11-30T08:00:00", NOW) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # naive: UTC
    assert parse_since(None, NOW) is None and parse_since("earliest", NOW) is None
    with pytest.raises(ValueError, match="duration like 7d"):
        parse_since("last tuesday", NOW)


def test_what_names_parts_in_a_fixed_order() -> None:
    assert parse_parts(None) == PARTS
    assert parse_parts("bandit, interactions") == ("interactions", "bandit")
    with pytest.raises(ValueError, match="not clicks"):
        parse_parts("interactions,clicks")


def reply(event_id: str, at: datetime, partition: int = 0) -> LogRecord:
    event = Reply(event_id=event_id, conversation_id="c", user_id="u", channel=Channel.WEB, text="hi", strategy="greet", created_at=at)
    return LogRecord(partition, 0, event)


def test_the_replay_merges_partitions_by_time_and_keeps_each_partitions_order() -> None:
    records = [
        reply("p0-a", NOW, 0),
        reply("p0-b", NOW - timedelta(seconds=5), 0),  # a producer's clock went back: still after p0-a
        reply("p1-a", NOW - timedelta(seconds=1), 1),
        reply("p1-b", NOW + timedelta(seconds=1), 1),
    ]
    assert [e.event_id for e in in_time_order(records)] == ["p1-a", "p0-a", "p0-b", "p1-b"]


def test_the_reply_clock_drops_entries_as_the_replay_passes_their_expiry() -> None:
    replies = [reply("old", NOW - timedelta(days=8)).event, reply("new", NOW).event, reply("new", NOW + timedelta(hours=1)).event]
    clock = _ReplyClock(7 * 86400, replies)
    assert clock.due((NOW - timedelta(days=2)).timestamp()) == []  # it expires a day before NOW
    assert clock.due(NOW.timestamp()) == ["old"]
    assert clock.due(NOW.timestamp()) == []
    # Published twice: the entry lives from the second time.
    assert clock.remaining() == [((NOW + timedelta(days=7, hours=1)).timestamp(), "new")]


def correction(event_id: str, label: str = "complaint") -> Correction:
    return Correction(event_id, "agent", f"text of {event_id}", label, NOW.timestamp())


def test_a_fine_tune_took_everything_collected_up_to_the_last_correction_it_names() -> None:
    pending = [correction(f"c{i}") for i in range(5)]
    weak = [correction(f"w{i}", "greeting") for i in range(3)]
    # Replay order: c0 w0 c1 w1 c2 | (a fine-tune took c0..c2 and used w0) | c3 w2 c4
    position = {"c0": 0, "w0": 1, "c1": 2, "w1": 3, "c2": 4, "c3": 5, "w2": 6, "c4": 7}
    fine_tune = FineTune(("c0", "c1", "c2"), ("w0",), promoted=True)
    taken, used = taken_by_fine_tunes([fine_tune], pending, weak, position)
    assert [c.feedback_event_id for c in taken] == ["c0", "c1", "c2"]
    assert [w.feedback_event_id for w in used] == ["w0", "w1"]  # w1 waited when it took them (not used: contradicted)
    # Collected before the replay's window (no position): only what a fine-tune names is taken.
    assert taken_by_fine_tunes([fine_tune], [correction("c1"), correction("x")], [], {}) == ([correction("c1")], [])


def test_recent_labelled_traffic_is_the_corrections_of_promoted_fine_tunes_in_order() -> None:
    collected = {c.feedback_event_id: c for c in map(correction, ["a", "b", "c", "d"])}
    fine_tunes = [FineTune(("b", "a"), (), True), FineTune(("c",), (), False), FineTune(("d", "gone"), (), True)]
    assert [c.feedback_event_id for c in recent_of(fine_tunes, collected)] == ["b", "a", "d"]


def test_the_registry_tells_a_kinds_fine_tunes_and_whether_they_were_promoted(tmp_path) -> None:
    store = ArtifactStore(tmp_path)

    def save(kind: str, source: str, ids: list[str], make_current: bool) -> None:
        meta = {"training_data": {"source": source, "feedback_event_ids": ids, "weak_label_feedback_event_ids": ids[:1]}}
        store.save(kind, lambda path: (path / "weights").write_text(",".join(ids)), meta, make_current=make_current)

    save(INTENT.model_kind, "intent training data", [], make_current=True)  # `elmo train nlu`: not a fine-tune
    save(INTENT.model_kind, "elmo.feedback intent_corrected", ["a", "b"], make_current=True)
    save(INTENT.model_kind, "elmo.feedback intent_corrected", ["c"], make_current=False)  # a candidate the gate rejected
    save(SENTIMENT.model_kind, "elmo.feedback sentiment_corrected", ["s"], make_current=True)
    assert fine_tunes_of(store, INTENT) == [FineTune(("a", "b"), ("a",), True), FineTune(("c",), ("c",), False)]
    assert fine_tunes_of(store, SENTIMENT) == [FineTune(("s",), ("s",), True)]
