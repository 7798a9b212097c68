"""The nlu service: elmo.utterances -> elmo.understandings (intent, entities, dialogue context).

The intent head is hot-swappable: the runtime loads it with `load_model`, hands it to
`understand` with every batch and swaps in versions announced on elmo.model-updates.
"""

from __future__ import annotations

from elmo.brand.catalog import Catalog, load_catalog
from elmo.contracts import topics
from elmo.contracts.events import Utterance
from elmo.dialogue import DialogueStore
from elmo.models.artifacts import ArtifactStore
from elmo.models.embeddings import SentenceEmbedder
from elmo.models.intent_model import MODEL_KIND, IntentModel, load_intent_model
from elmo.models.intent_model import held_out_evaluator as intent_held_out_evaluator
from elmo.models.registry import Evaluator
from elmo.runtime import ModelSlot, Stage, run_stage
from services.nlu.core import Understander
from services.nlu.settings import NluSettings


def build_stage(settings: NluSettings) -> Stage:
    embedder: SentenceEmbedder | None = None
    catalog: Catalog | None = None
    dialogue: DialogueStore | None = None

    def open_clients() -> None:
        nonlocal catalog, dialogue
        catalog = load_catalog()
        dialogue = DialogueStore.from_url(settings.redis_url, settings.nlu_context_ttl_s)

    def load_model(version: str | None) -> tuple[IntentModel, str]:
        nonlocal embedder
        if embedder is None:  # the encoder is shared by every head version
            embedder = SentenceEmbedder(threads=settings.model_threads)
        found = ArtifactStore(settings.model_store).get_or_current(MODEL_KIND, version)
        return load_intent_model(found, embedder, settings.nlu_min_confidence), found.version

    async def understand(events: list[Utterance], model: IntentModel):  # noqa: ANN202
        assert catalog is not None and dialogue is not None, "on_start opens the clients"
        return await Understander(model, catalog, dialogue, settings.nlu_context_turns).understand_batch(events)

    async def close() -> None:
        if dialogue is not None:
            await dialogue.close()

    return Stage(
        name="nlu",
        consumes=topics.UTTERANCES,
        emits=topics.UNDERSTANDINGS,
        input_type=Utterance,
        process_batch=understand,
        model=ModelSlot(MODEL_KIND),
        load_model=load_model,
        on_start=open_clients,
        on_stop=close,
        description="Intent, entities and dialogue context.",
    )


def held_out_evaluator(settings: NluSettings | None = None) -> Evaluator:
    """The promotion gate's judge for this service's settings (see `elmo.models.intent_model`)."""
    settings = settings or NluSettings()
    return intent_held_out_evaluator(settings.model_threads, settings.nlu_min_confidence)


def main() -> None:
    settings = NluSettings()
    run_stage(build_stage(settings), settings)
