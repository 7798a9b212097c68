"""The generator service: elmo.recommendations -> elmo.replies (grounded reply per turn)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from elmo.brand.catalog import load_catalog
from elmo.brand.knowledge import load_knowledge
from elmo.brand.profile import load_profile
from elmo.contracts import topics
from elmo.contracts.events import Recommended
from elmo.dialogue import DialogueStore
from elmo.reply_bandit import ReplyLearningStore
from elmo.runtime import ModelSlot, Stage, run_stage
from services.generator.core import ReplyGenerator
from services.generator.policy import Brand, stable_variant
from services.generator.rephrase import MODEL_NAME, Rephraser
from services.generator.settings import GeneratorSettings
from services.generator.templates import load_templates
from services.generator.variant_policy import ThompsonVariantPolicy


def load_brand() -> Brand:
    return Brand(load_catalog(), load_knowledge(), load_profile(), load_templates())


def build_stage(settings: GeneratorSettings) -> Stage:
    # Templates are the model; with rephrasing on, readiness also waits for the language model.
    slot = ModelSlot("reply-policy")
    rephraser: Rephraser | None = None
    generator: ReplyGenerator | None = None
    learning: ReplyLearningStore | None = None
    bandit: ThompsonVariantPolicy | None = None
    registries: list[CollectorRegistry] = []

    async def load() -> None:
        nonlocal generator, rephraser, learning, bandit
        if settings.generator_rephrase:
            rephraser = Rephraser(settings.generator_rephrase_max_new_tokens, settings.model_threads)
            for registry in registries:
                rephraser.register_metrics(registry)
        brand = load_brand()
        dialogue = DialogueStore.from_url(settings.redis_url, settings.generator_context_ttl_s)
        learning = ReplyLearningStore.from_url(settings.redis_url, settings)
        if settings.generator_bandit:
            bandit = ThompsonVariantPolicy(learning.counts, brand.templates.strategies, settings.generator_bandit_refresh_s)
            await bandit.refresh()
        generator = ReplyGenerator(brand, dialogue, choose_variant=bandit or stable_variant, rephraser=rephraser, reply_index=learning)
        slot.set_loaded("templates" + (f"+{MODEL_NAME}" if rephraser else ""))

    async def reply(events: list[Recommended]):  # noqa: ANN202
        assert generator is not None, "generator not loaded"
        if bandit is not None:
            bandit.refresh_in_background()
        return await generator.reply_batch(events)

    async def stop() -> None:
        if bandit is not None:
            await bandit.close()
        if generator is not None:
            await generator.dialogue.close()
        if learning is not None:
            await learning.close()

    def register_metrics(registry: CollectorRegistry) -> None:
        registries.append(registry)  # the rephraser's metrics join it once the model is loaded

    return Stage(
        name="generator",
        consumes=topics.RECOMMENDATIONS,
        emits=topics.REPLIES,
        input_type=Recommended,
        process_batch=reply,
        model=slot,
        on_start=load,
        on_stop=stop,
        register_metrics=register_metrics,
        description="Grounded reply from the dialogue policy, catalog and knowledge base.",
    )


def main() -> None:
    settings = GeneratorSettings()
    run_stage(build_stage(settings), settings)
