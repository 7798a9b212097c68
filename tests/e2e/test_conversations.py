"""Each scripted conversation, typed and spoken, through the running chain: intents, slot filling
across turns, grounded replies with recommendations and handoffs where expected."""

from __future__ import annotations

import pytest

from elmo.brand.catalog import load_catalog
from elmo.contracts.events import GroundingFact
from elmo.tools.demo import load_script, play_conversation
from services.generator.grounding import check_reply

pytestmark = pytest.mark.e2e

SCRIPT = load_script()


@pytest.mark.parametrize("voice", [False, True], ids=["text", "voice"])
@pytest.mark.parametrize("conversation", SCRIPT, ids=[c.name.replace(" ", "-") for c in SCRIPT])
def test_a_scripted_conversation(conversation, voice, chain_client):
    played = play_conversation(chain_client, conversation, voice)
    catalog = load_catalog()
    product_names = [item.name for item in catalog.items]
    for scripted, turn in zip(conversation.turns, played.turns, strict=True):
        expect = scripted.expect
        reply = turn.reply
        where = f"{conversation.name} ({'voice' if voice else 'text'}): {scripted.say!r} -> {reply and reply.get('text')!r}"
        assert reply is not None, f"no reply: {where}"
        assert reply["intent"] == expect.get("voice_intent" if voice else "intent", expect["intent"]), where
        assert reply["strategy"] == expect["strategy"], where
        if "awaiting_slot" in expect:
            assert reply["awaiting_slot"] == expect["awaiting_slot"], where
        for value in expect.get("slots", {}).values():
            if expect["strategy"] in ("confirm_order", "order_link"):
                assert value.lower() in reply["text"].lower(), where
        if "recommendations" in expect:
            assert bool(reply["recommendations"]) == expect["recommendations"], where
        if "recommended_category" in expect:
            assert {catalog.by_id(r["item_id"]).category for r in reply["recommendations"]} == {expect["recommended_category"]}, where
        if "sentiment" in expect:
            assert reply["sentiment_label"] == expect["sentiment"], where
        assert reply["handoff"] == expect.get("handoff", False), where
        facts = [GroundingFact.model_validate(f) for f in reply["grounding"]]
        report = check_reply(reply["text"], facts, product_names)
        assert report.ok, f"{where}: {report.reasons()}"
        if voice:
            assert reply["source"] == "voice", where
