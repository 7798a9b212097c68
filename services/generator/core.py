"""The generator's core: compose each turn's reply and remember what the bot did, per conversation."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio.to_thread

from elmo.contracts.events import Recommended, Reply
from elmo.dialogue import DialogueStore
from elmo.reply_bandit import ReplyLearningStore
from services.generator.grounding import check_rephrasing
from services.generator.policy import Brand, ComposedReply, VariantChooser, compose_reply, stable_variant
from services.generator.rephrase import Rephraser

log = logging.getLogger("elmo.generator")


class ReplyGenerator:
    def __init__(
        self,
        brand: Brand,
        dialogue: DialogueStore,
        choose_variant: VariantChooser = stable_variant,
        rephraser: Rephraser | None = None,
        reply_index: ReplyLearningStore | None = None,
    ) -> None:
        self.brand = brand
        self.dialogue = dialogue
        self.choose_variant = choose_variant
        self.rephraser = rephraser
        # Where each reply's strategy and variant are recorded, so feedback on it can be credited.
        self.reply_index = reply_index
        self.product_names = [item.name for item in brand.catalog.items]

    async def reply_batch(self, events: Sequence[Recommended]) -> list[Reply]:
        bots = await self.dialogue.load_bot_states(e.conversation_id for e in events)
        replies = []
        # In batch order: two turns of one conversation in a batch see each other's memory.
        for event in events:
            composed, bots[event.conversation_id] = compose_reply(
                event, bots[event.conversation_id], self.brand, self.choose_variant
            )
            text = await self._maybe_rephrase(composed)
            replies.append(
                event.derive(
                    Reply,
                    text=text,
                    strategy=composed.strategy,
                    variant=composed.variant,
                    recommendations=composed.recommendations,
                    handoff=composed.handoff,
                    grounding=composed.grounding,
                    awaiting_slot=composed.awaiting_slot,
                    in_reply_to_text=event.text,
                    intent=event.intent.name,
                    intent_confidence=event.intent.confidence,
                    sentiment_label=event.sentiment.label,
                    sentiment_score=event.sentiment.score,
                )
            )
        index = self.reply_index
        await self.dialogue.save_bot_states(bots, also=(lambda pipe: index.index_replies(pipe, replies)) if index else None)
        return replies

    async def _maybe_rephrase(self, composed: ComposedReply) -> str:
        if self.rephraser is None or composed.handoff or composed.recommendations:
            # Lists of links and handoffs stay exactly as written.
            return composed.text
        candidate = await anyio.to_thread.run_sync(self.rephraser.rephrase, composed.text)
        report = check_rephrasing(
            candidate, composed.text, composed.grounding, self.product_names, self.brand.profile.banned_phrases
        )
        if candidate and report.ok:
            self.rephraser.accepted()
            return candidate
        self.rephraser.rejected()
        log.info("rephrasing rejected, template reply sent", extra={"reasons": report.reasons() or ["empty"]})
        return composed.text
