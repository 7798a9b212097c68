"""Recent labelled traffic on the real Redis: the corrections of a promoted fine-tune are replayed
and guarded by the next one; a rejected fine-tune's are not; an agent's later label of a text wins."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from elmo.contracts.events import Feedback, FeedbackKind
from elmo.models.registry import Decision
from elmo.reply_bandit import ReplyRecord
from elmo.runtime.settings import ConnectionSettings
from elmo.learning.corrections import INTENT, Correction
from services.feedback_trainer.corrections import CorrectionTrainer
from tests.integration.feedback.test_weak_labels_on_redis import with_trainers

pytestmark = pytest.mark.integration


def corrections(texts_and_labels: Sequence[tuple[str, str]], batch: str) -> tuple[list[Feedback], dict[str, ReplyRecord]]:
    replies, events = {}, []
    for n, (text, label) in enumerate(texts_and_labels):
        reply_id = f"r-{batch}-{n}"
        replies[reply_id] = ReplyRecord(reply_id, "greet", "greet:0", "greeting", text, "c1", f"agent-{batch}-{n}")
        events.append(Feedback(conversation_id="c1", user_id=f"agent-{batch}-{n}", channel="web", kind=FeedbackKind.INTENT_CORRECTED,
                               reply_event_id=reply_id, corrected_label=label, event_id=f"fb-{batch}-{n}"))  # fmt: skip
    return events, replies


def test_promoted_corrections_become_the_recent_labelled_traffic_of_the_next_fine_tune(connections: ConnectionSettings) -> None:
    seen: list[list[tuple[str, str]]] = []
    verdicts = iter([True, False, True, True])

    def fine_tune(batch: Sequence[Correction], weak_labels: Sequence[Correction], recent: Sequence[Correction] = ()) -> Decision:
        seen.append(sorted((r.text, r.label) for r in recent))
        return Decision(INTENT.model_kind, f"v-{len(seen)}", promoted=next(verdicts), reason="test")

    async def test(trainers: dict[str, CorrectionTrainer]) -> None:
        intent = trainers["intent"]  # batch=3
        for batch, rows in (
            ("a", [("zorblax", "purchase"), ("blorp", "purchase"), ("glim", "greeting")]),  # promoted
            ("b", [("quux", "complaint"), ("fnord", "complaint"), ("wibble", "complaint")]),  # rejected: not recent
            ("c", [("Zorblax", "complaint"), ("x1", "thanks"), ("x2", "thanks")]),  # relabels zorblax; promoted
            ("d", [("y1", "goodbye"), ("y2", "goodbye"), ("y3", "goodbye")]),
        ):
            await intent.collect(*corrections(rows, batch))
            await intent._training  # type: ignore[misc]

    with_trainers(connections, fine_tune, test)
    assert seen[0] == []
    assert seen[1] == [("blorp", "purchase"), ("glim", "greeting"), ("zorblax", "purchase")]
    assert seen[2] == [("blorp", "purchase"), ("glim", "greeting")]  # batch c's own "Zorblax" replaces the old label
    assert seen[3] == [("Zorblax", "complaint"), ("blorp", "purchase"), ("glim", "greeting"), ("x1", "thanks"), ("x2", "thanks")]
