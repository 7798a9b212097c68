from elmo.contracts.events import Entity
from elmo.dialogue import DialogueState
from services.nlu.dialogue_turn import resolve_turn


def entity(kind: str, value: str, normalized: str | None = None) -> Entity:
    return Entity(type=kind, value=value, start=0, end=len(value), normalized=normalized)


def test_a_fragment_answering_the_open_question_is_inform_and_fills_the_slot():
    state = DialogueState(product_in_focus="phone-pixel-9", awaiting_slot="storage")
    intent, state = resolve_turn(state, "e2", "16GB", "out_of_scope", [entity("storage", "16GB", "16GB")], max_turns=5)
    assert intent == "inform"
    assert state.slots == {"storage": "16GB"} and state.awaiting_slot is None
    assert state.product_in_focus == "phone-pixel-9" and state.turn == 1


def test_a_bare_slot_value_without_an_open_question_is_still_inform():
    intent, state = resolve_turn(DialogueState(), "e1", "black pls", "out_of_scope", [entity("color", "black", "black")], 5)
    assert intent == "inform" and state.slots == {"color": "black"}


def test_a_full_question_keeps_its_intent_and_a_new_product_clears_the_old_products_slots():
    state = DialogueState(product_in_focus="phone-pixel-9", slots={"storage": "128GB", "city": "Lyon"})
    intent, state = resolve_turn(
        state, "e3", "how much is the iphone 16 in blue?", "price_inquiry",
        [entity("product", "iphone 16", "phone-iphone-16"), entity("color", "blue", "blue")], 5,
    )
    assert intent == "price_inquiry"
    assert state.product_in_focus == "phone-iphone-16"
    assert state.slots == {"city": "Lyon", "color": "blue"}


def test_a_redelivered_turn_is_not_applied_twice_and_history_is_bounded():
    state = DialogueState()
    for i in range(4):
        _, state = resolve_turn(state, f"e{i}", f"hi {i}", "greeting", [], max_turns=3)
    _, again = resolve_turn(state, "e3", "hi 3", "greeting", [], max_turns=3)
    assert again.turn == state.turn == 4
    assert [t.event_id for t in state.history] == ["e1", "e2", "e3"]
