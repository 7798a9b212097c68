"""nlu's core: classify a batch of utterances, extract entities, advance each conversation."""

from __future__ import annotations

from collections.abc import Sequence

import anyio.to_thread

from elmo.brand.catalog import Catalog
from elmo.contracts.events import DialogueContext, Intent, Understanding, Utterance
from elmo.dialogue import DialogueStore
from elmo.models.embeddings import vector_to_b64
from services.nlu.dialogue_turn import resolve_turn
from services.nlu.entities import extract_entities
from elmo.models.intent_model import IntentModel


class Understander:
    def __init__(self, model: IntentModel, catalog: Catalog, dialogue: DialogueStore, context_turns: int) -> None:
        self.model = model
        self.catalog = catalog
        self.dialogue = dialogue
        self.context_turns = context_turns

    async def understand_batch(self, events: Sequence[Utterance]) -> list[Understanding]:
        # The model is CPU work: off the event loop, one call for the whole batch.
        predictions = await anyio.to_thread.run_sync(self.model.predict, [e.text for e in events])
        states = await self.dialogue.load_many(e.conversation_id for e in events)
        outputs = []
        # In batch order, so two turns of one conversation in the same batch apply in sequence.
        for event, prediction in zip(events, predictions, strict=True):
            # What the bot last asked tells the extractor how to read a bare "42" or "256".
            awaiting = states[event.conversation_id].awaiting_slot
            entities = extract_entities(event.text, self.catalog, awaiting_slot=awaiting)
            intent, state = resolve_turn(
                states[event.conversation_id], event.event_id, event.text, prediction.intent, entities, self.context_turns
            )
            states[event.conversation_id] = state
            outputs.append(
                event.derive(
                    Understanding,
                    intent=Intent(name=intent, confidence=round(prediction.confidence, 4)),
                    entities=entities,
                    context=DialogueContext(
                        turn=state.turn,
                        slots=state.slots,
                        product_in_focus=state.product_in_focus,
                        awaiting_slot=state.awaiting_slot,
                    ),
                    embedding_b64=vector_to_b64(prediction.embedding),
                    embedding_model=self.model.embedder.version,
                    nlu_model_version=self.model.version,
                )
            )
        await self.dialogue.save_many(states)
        return outputs
