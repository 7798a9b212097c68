"""The nlu service: elmo.utterances -> elmo.understandings (intent, entities, dialogue context)."""

from __future__ import annotations

from elmo.brand.catalog import load_catalog
from elmo.contracts import topics
from elmo.contracts.events import Utterance
from elmo.dialogue import DialogueStore
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.runtime import ModelSlot, Stage, run_stage
from services.nlu.core import Understander
from services.nlu.intent_model import MODEL_KIND, IntentModel
from services.nlu.settings import NluSettings


def build_stage(settings: NluSettings) -> Stage:
    slot = ModelSlot(MODEL_KIND)
    understander: Understander | None = None

    def load() -> None:
        nonlocal understander
        model = IntentModel.load(
            ArtifactStore(settings.model_store), SentenceEmbedder(threads=settings.model_threads), settings.nlu_min_confidence
        )
        dialogue = DialogueStore.from_url(settings.redis_url, settings.nlu_context_ttl_s)
        understander = Understander(model, load_catalog(), dialogue, settings.nlu_context_turns)
        slot.set_loaded(model.version)

    async def understand(events: list[Utterance]):  # noqa: ANN202
        assert understander is not None, "model not loaded"
        return await understander.understand_batch(events)

    async def close() -> None:
        if understander is not None:
            await understander.dialogue.close()

    return Stage(
        name="nlu",
        consumes=topics.UTTERANCES,
        emits=topics.UNDERSTANDINGS,
        input_type=Utterance,
        process_batch=understand,
        model=slot,
        on_start=load,
        on_stop=close,
        description="Intent, entities and dialogue context.",
    )


def main() -> None:
    settings = NluSettings()
    run_stage(build_stage(settings), settings)
