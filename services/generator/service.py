"""The generator service: elmo.recommendations -> elmo.replies (grounded reply per turn).

With rephrasing on, the language model is hot-swappable: the runtime loads the store's current
`generator-rephraser` version with `load_model` (the packaged GGUF while the store has none),
hands it to `reply` with every batch and swaps in versions announced on elmo.model-updates.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from elmo.brand.catalog import load_catalog
from elmo.brand.knowledge import load_knowledge
from elmo.brand.profile import load_profile
from elmo.contracts import topics
from elmo.contracts.events import Recommended
from elmo.dialogue import DialogueStore
from elmo.models.artifacts import ArtifactStore
from elmo.models.registry import Evaluator
from elmo.models.rephraser import MODEL_KIND as REPHRASER_KIND
from elmo.models.rephraser import RephraserModel, RephrasingLog
from elmo.reply_bandit import ReplyLearningStore
from elmo.runtime import ModelSlot, Stage, run_stage
from elmo.runtime.processing import output_event_id
from services.generator.core import ReplyGenerator
from services.generator.policy import Brand, stable_variant
from services.generator.rephrase import RephraseMetrics, Rephraser, judge
from services.generator.settings import GeneratorSettings
from services.generator.templates import load_templates
from services.generator.variant_policy import ThompsonVariantPolicy

SERVICE_NAME = "generator"


def load_brand() -> Brand:
    return Brand(load_catalog(), load_knowledge(), load_profile(), load_templates())


def build_stage(settings: GeneratorSettings) -> Stage:
    # Templates are the model; with rephrasing on, the slot is the language model's kind and
    # readiness also waits for it.
    slot = ModelSlot(REPHRASER_KIND if settings.generator_rephrase else "reply-policy")
    generator: ReplyGenerator | None = None
    learning: ReplyLearningStore | None = None
    bandit: ThompsonVariantPolicy | None = None
    metrics: RephraseMetrics | None = None
    tokenizer = None  # the same for every version: built once (most of a first load's ~20 s)

    def load_rephraser(version: str | None) -> tuple[Rephraser, str]:
        nonlocal tokenizer
        store = ArtifactStore(settings.model_store)
        found = store.get_or_current(REPHRASER_KIND, version) if version or store.current_version(REPHRASER_KIND) else None
        model = RephraserModel.load(found, settings.model_threads, tokenizer)
        tokenizer = model.tokenizer
        return Rephraser(model, settings.generator_rephrase_max_new_tokens, metrics), model.version

    async def load() -> None:
        nonlocal generator, learning, bandit
        brand = load_brand()
        dialogue = DialogueStore.from_url(settings.redis_url, settings.generator_context_ttl_s)
        learning = ReplyLearningStore.from_url(settings.redis_url, settings)
        if settings.generator_bandit:
            bandit = ThompsonVariantPolicy(learning.counts, brand.templates.strategies, settings.generator_bandit_refresh_s)
            await bandit.refresh()
        rephrasing_log = None
        if settings.generator_rephrase:
            rephrasing_log = RephrasingLog(None, settings.reply_index_ttl_s, settings.learning_key_prefix)
        generator = ReplyGenerator(
            brand,
            dialogue,
            choose_variant=bandit or stable_variant,
            reply_index=learning,
            rephrasing_log=rephrasing_log,
            # One reply per input, published first: the id the runtime gives output 0 of this stage.
            reply_event_id=lambda event: output_event_id(SERVICE_NAME, event.event_id, 0),
        )
        if not settings.generator_rephrase:
            slot.set_loaded("templates")

    async def reply(events: list[Recommended], rephraser: Rephraser | None = None):  # noqa: ANN202
        assert generator is not None, "generator not loaded"
        if bandit is not None:
            bandit.refresh_in_background()
        return await generator.reply_batch(events, rephraser)

    async def stop() -> None:
        if bandit is not None:
            await bandit.close()
        if generator is not None:
            await generator.dialogue.close()
        if learning is not None:
            await learning.close()

    def register_metrics(registry: CollectorRegistry) -> None:
        nonlocal metrics
        if settings.generator_rephrase:
            metrics = RephraseMetrics(registry)  # shared by every version swapped in

    return Stage(
        name=SERVICE_NAME,
        consumes=topics.RECOMMENDATIONS,
        emits=topics.REPLIES,
        input_type=Recommended,
        process_batch=reply,
        model=slot,
        load_model=load_rephraser if settings.generator_rephrase else None,
        on_start=load,
        on_stop=stop,
        register_metrics=register_metrics,
        description="Grounded reply from the dialogue policy, catalog and knowledge base.",
    )


def held_out_evaluator() -> Evaluator:
    """The promotion gate's judge of `generator-rephraser` versions (see `elmo.models.rephraser`)."""
    settings = GeneratorSettings()
    return judge(RephraserModel.packaged(settings.model_threads), load_brand()).evaluator()


def main() -> None:
    settings = GeneratorSettings()
    run_stage(build_stage(settings), settings)
