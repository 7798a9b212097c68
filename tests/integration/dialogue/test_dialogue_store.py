"""The dialogue state's two keys on the real Redis: nlu's turns and the generator's open question."""

from __future__ import annotations

import uuid

from elmo.dialogue import BotState, DialogueState, DialogueStore


async def test_the_question_asked_after_a_turn_is_seen_by_the_next_turn_only(connections):
    store = DialogueStore.from_url(connections.redis_url, ttl_s=60)
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    try:
        # nlu has processed turn 1; the generator answered it with a question.
        await store.save_many({conversation: DialogueState(turn=1, product_in_focus="phone-pixel-9")})
        await store.save_bot_states({conversation: BotState(turn=1, strategy="ask_slot", awaiting_slot="storage")})
        state = await store.load(conversation)
        assert state.awaiting_slot == "storage" and state.product_in_focus == "phone-pixel-9"

        # nlu processes turn 2 (the answer); the generator has not replied to it yet.
        state.turn = 2
        state.awaiting_slot = None
        await store.save_many({conversation: state})
        assert (await store.load(conversation)).awaiting_slot is None

        # Neither writer overwrote the other's key.
        bots = await store.load_bot_states([conversation])
        assert bots[conversation].strategy == "ask_slot"
        assert (await store.load(conversation)).product_in_focus == "phone-pixel-9"
    finally:
        await store._client.delete(f"elmo:dialogue:{conversation}", f"elmo:dialogue:{conversation}:bot")
        await store.close()
