"""How one utterance updates the conversation: the final intent and the new dialogue state.

Pure: a unit test calls `resolve_turn` with a state, a prediction and entities.
"""

from __future__ import annotations

from collections.abc import Sequence

from elmo.contracts.events import Entity
from elmo.dialogue import DialogueState

INFORM = "inform"
OUT_OF_SCOPE = "out_of_scope"
# Entity types that answer a question rather than ask one.
SLOT_TYPES = frozenset({"size", "color", "storage", "quantity", "order_id", "city", "date", "money"})
# Slots that describe one product: a new product in focus clears them.
PRODUCT_SLOTS = frozenset({"size", "color", "storage", "quantity"})
FRAGMENT_MAX_WORDS = 4


def resolve_turn(
    state: DialogueState,
    event_id: str,
    text: str,
    predicted_intent: str,
    entities: Sequence[Entity],
    max_turns: int,
) -> tuple[str, DialogueState]:
    state = state.model_copy(deep=True)
    if state.already_applied(event_id):
        return predicted_intent, state

    slot_entities = [e for e in entities if e.type in SLOT_TYPES]
    is_fragment = len(text.split()) <= FRAGMENT_MAX_WORDS
    answers_question = state.awaiting_slot is not None and any(e.type == state.awaiting_slot for e in slot_entities)
    only_slots = bool(slot_entities) and all(e.type in SLOT_TYPES for e in entities)

    intent = predicted_intent
    if answers_question and (is_fragment or predicted_intent in (INFORM, OUT_OF_SCOPE)):
        intent = INFORM
    elif predicted_intent == OUT_OF_SCOPE and is_fragment and only_slots:
        # "black pls", "256gb": a bare answer the classifier has no context for.
        intent = INFORM

    for entity in entities:
        if entity.type == "product":
            product = entity.normalized or entity.value
            if product != state.product_in_focus:
                state.slots = {k: v for k, v in state.slots.items() if k not in PRODUCT_SLOTS}
            state.product_in_focus = product
    for entity in slot_entities:
        state.slots[entity.type] = entity.normalized or entity.value
    if answers_question:
        state.awaiting_slot = None

    state.record(event_id, text, intent, max_turns)
    return intent, state
