"""The generator's core: compose each turn's reply and remember what the bot did, per conversation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread
from redis.asyncio.client import Pipeline

from elmo.contracts.events import Recommended, Reply
from elmo.dialogue import DialogueStore
from elmo.models.rephraser import RephrasingLog, RephrasingPair
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
        rephrasing_log: RephrasingLog | None = None,
        reply_event_id: Callable[[Recommended], str] | None = None,
    ) -> None:
        self.brand = brand
        # The id the reply will be published under (the runtime's, derived from the input), so the
        # reply index and the rephrasing log key on the id clients see and send feedback about.
        self.reply_event_id = reply_event_id
        self.dialogue = dialogue
        self.choose_variant = choose_variant
        # Without a hot-swapped model handed to `reply_batch`, this one rephrases (None: templates only).
        self.rephraser = rephraser
        # Where each reply's strategy and variant are recorded, so feedback on it can be credited.
        self.reply_index = reply_index
        # Where accepted rephrasings are kept, so a rating of one can fine-tune the language model.
        self.rephrasing_log = rephrasing_log
        self.product_names = [item.name for item in brand.catalog.items]

    async def reply_batch(self, events: Sequence[Recommended], rephraser: Rephraser | None = None) -> list[Reply]:
        rephraser = rephraser or self.rephraser
        bots = await self.dialogue.load_bot_states(e.conversation_id for e in events)
        replies = []
        rephrased: list[RephrasingPair] = []
        # In batch order: two turns of one conversation in a batch see each other's memory.
        for event in events:
            composed, bots[event.conversation_id] = compose_reply(
                event, bots[event.conversation_id], self.brand, self.choose_variant
            )
            text = await self._maybe_rephrase(composed, rephraser)
            identity = {"event_id": self.reply_event_id(event)} if self.reply_event_id is not None else {}
            replies.append(
                event.derive(
                    Reply,
                    **identity,
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
            if text != composed.text:
                rephrased.append(RephrasingPair(composed.text, text, replies[-1].event_id))
        await self.dialogue.save_bot_states(bots, also=lambda pipe: self._index(pipe, replies, rephrased))
        return replies

    def _index(self, pipe: Pipeline, replies: list[Reply], rephrased: list[RephrasingPair]) -> None:
        if self.reply_index is not None:
            self.reply_index.index_replies(pipe, replies)
        if self.rephrasing_log is not None and rephrased:
            self.rephrasing_log.record(pipe, rephrased)

    async def _maybe_rephrase(self, composed: ComposedReply, rephraser: Rephraser | None) -> str:
        if rephraser is None or composed.handoff or composed.recommendations:
            # Lists of links and handoffs stay exactly as written.
            return composed.text
        candidate = await anyio.to_thread.run_sync(rephraser.rephrase, composed.text)
        report = check_rephrasing(
            candidate, composed.text, composed.grounding, self.product_names, self.brand.profile.banned_phrases
        )
        if candidate and report.ok:
            rephraser.accepted()
            return candidate
        rephraser.rejected()
        log.info("rephrasing rejected, template reply sent", extra={"reasons": report.reasons() or ["empty"]})
        return composed.text
