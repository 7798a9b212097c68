"""When a service says the learnt state needs a rebuild (the check itself, on Redis:
tests/integration/feedback/test_state_epoch_on_redis.py)."""

from __future__ import annotations

import pytest

from elmo.learning.state_epoch import rebuild_needed


@pytest.mark.parametrize(
    ("epochs_missing", "lost", "store_empty", "feedback_events", "needed"),
    [
        (False, False, False, 500, False),  # whole
        (True, False, True, 500, True),  # wiped: nothing recorded, the topic has history
        (True, False, True, 0, False),  # a fresh install
        (True, False, True, None, False),  # the topic could not be read: no verdict
        (True, False, False, 500, False),  # state written before the marks existed
        (False, True, False, None, True),  # the trainer saw the marks vanish while it ran
    ],
)
def test_a_rebuild_is_needed_when_the_state_was_lost_and_the_topic_can_rebuild_it(
    epochs_missing: bool, lost: bool, store_empty: bool, feedback_events: int | None, needed: bool
) -> None:
    assert rebuild_needed(epochs_missing, lost, store_empty, feedback_events) is needed
