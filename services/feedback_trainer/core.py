"""feedback-trainer's core: turn feedback into interactions and record them.

Views, clicks and purchases of recommended items go to the interaction store the recommender
reads at request time; other feedback (ratings, corrections, handoff outcomes) is not used yet.
Nothing is published: the topic this stage emits to (model updates) gets a record only when a
model is refitted and promoted, which this service does not do yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from elmo.contracts.events import Feedback
from elmo.interactions import InteractionStore, interaction_from_feedback


async def record_feedback(events: Sequence[Feedback], store: InteractionStore) -> list[None]:
    interactions = [i for i in (interaction_from_feedback(e) for e in events) if i is not None]
    await store.record_many(interactions)
    return [None] * len(events)
