"""The dialogue policy: from an understood, scored, recommended turn to a grounded reply.

Pure: `compose_reply(event, bot_state, brand, choose_variant)` returns the reply and the bot's new
state; a unit test calls it with no broker and no Redis. Every value placed in a template comes
from `_Reply.fact(...)`, so the reply's grounding list is complete by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from elmo.brand.catalog import Catalog, Item
from elmo.brand.knowledge import KnowledgeBase, KnowledgeEntry
from elmo.brand.profile import BrandProfile
from elmo.contracts.events import GroundingFact, Recommendation, Recommended
from elmo.dialogue import BotState
from services.generator.templates import ReplyTemplates

# Attribute slots in the order the bot asks for them, with the catalog field and a label.
PRODUCT_SLOTS: tuple[tuple[str, str, str], ...] = (
    ("storage", "storage", "storage size"),
    ("size", "sizes", "size"),
    ("color", "colors", "colour"),
)
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
# Below this score a negative turn is met with an apology first; a mildly negative label on a plain
# question ("how long does delivery take?" scored -0.13) does not call for one.
APOLOGY_BELOW_SCORE = -0.25
ORDER_FLOWS = ("order_status", "return_refund", "complaint")
PRODUCT_INTENTS = ("purchase", "product_inquiry", "price_inquiry")


class VariantChooser(Protocol):
    def __call__(self, strategy: str, variants: int, key: str) -> int: ...


def stable_variant(strategy: str, variants: int, key: str) -> int:
    """A variant fixed by the event id: reprocessing a turn gives the same reply."""
    digest = hashlib.sha256(f"{strategy}/{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % variants


@dataclass(frozen=True)
class Brand:
    catalog: Catalog
    knowledge: KnowledgeBase
    profile: BrandProfile
    templates: ReplyTemplates

    def price(self, amount: float) -> str:
        symbol = CURRENCY_SYMBOLS.get(self.catalog.currency, self.catalog.currency + " ")
        return f"{symbol}{amount:.2f}" if amount != int(amount) else f"{symbol}{int(amount)}"

    def item_url(self, item: Item) -> str:
        return f"{self.profile.shop_url.rstrip('/')}/p/{item.id}"


@dataclass
class ComposedReply:
    text: str
    strategy: str
    variant: str
    recommendations: list[Recommendation] = field(default_factory=list)
    handoff: bool = False
    grounding: list[GroundingFact] = field(default_factory=list)
    awaiting_slot: str | None = None


class _Reply:
    """A reply under construction: sentences, the facts they quote, and the main strategy."""

    def __init__(self, brand: Brand, choose: VariantChooser, key: str) -> None:
        self.brand = brand
        self.choose = choose
        self.key = key
        self.sentences: list[str] = []
        self.facts: list[GroundingFact] = []
        self.strategy = ""
        self.variant = ""
        self.recommendations: list[Recommendation] = []
        self.handoff = False
        self.awaiting_slot: str | None = None

    def fact(self, source: str, reference: str, text: str) -> str:
        self.facts.append(GroundingFact(source=source, reference=reference, fact=text))  # type: ignore[arg-type]
        return text

    def say(self, strategy: str, *, main: bool = True, **values: str) -> None:
        variants = self.brand.templates.variants(strategy)
        index = self.choose(strategy, len(variants), self.key)
        self.sentences.append(variants[index].format(**values))
        if main:
            self.strategy, self.variant = strategy, f"{strategy}:{index}"

    def list_recommendations(self, recommendations: Sequence[Recommendation]) -> None:
        for rec in recommendations:
            name = self.fact("recommendation", rec.tracking_id, rec.name)
            price = self.fact("recommendation", rec.tracking_id, self.brand.price(rec.price)) if rec.price is not None else None
            reason = self.fact("recommendation", rec.tracking_id, rec.reason)
            line = f"• {name}" + (f" – {price}" if price else "") + f" ({reason})"
            if rec.url:
                line += f" {self.fact('recommendation', rec.tracking_id, rec.url)}"
            self.sentences.append(line)
        self.recommendations = list(recommendations)

    def build(self) -> ComposedReply:
        text = ""
        for sentence in self.sentences:
            separator = "" if not text else ("\n" if sentence.startswith("•") or text.endswith(":") else " ")
            text += separator + sentence
        return ComposedReply(
            text=text,
            strategy=self.strategy,
            variant=self.variant,
            recommendations=self.recommendations,
            handoff=self.handoff,
            grounding=self.facts,
            awaiting_slot=self.awaiting_slot,
        )


def _join_options(options: Sequence[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _entity(event: Recommended, entity_type: str) -> str | None:
    for entity in event.entities:
        if entity.type == entity_type:
            return entity.normalized or entity.value
    return None


class _Turn:
    """One turn's decision: reads the event and the bot's memory, writes a `_Reply` and new memory."""

    def __init__(self, event: Recommended, bot: BotState, brand: Brand, choose: VariantChooser) -> None:
        self.event = event
        self.bot = bot
        self.brand = brand
        self.reply = _Reply(brand, choose, event.event_id)
        self.next = BotState(turn=event.context.turn)
        self.negative = event.sentiment.label == "negative"
        self.intent = event.intent.name

    # --- the policy ------------------------------------------------------------------------------

    def decide(self) -> tuple[ComposedReply, BotState]:
        if self.negative and self.event.sentiment.score <= APOLOGY_BELOW_SCORE:
            # Apologise before anything else.
            self.reply.say("apology", main=False)
        intent = self.intent
        if intent == "human_handoff" or (intent == "complaint" and self.negative):
            self._handoff()
        elif intent == "greeting":
            self.reply.say("greet", brand=self._brand_name())
        elif intent == "goodbye":
            self.reply.say("farewell", brand=self._brand_name())
        elif intent == "thanks":
            self.reply.say("welcome")
        elif intent == "out_of_scope":
            self.reply.say("cannot_help")
        elif intent == "shipping_info":
            self._knowledge("shipping")
        elif intent == "store_info":
            self._stores()
        elif intent == "promotion_inquiry":
            self._promotions()
        elif intent in ORDER_FLOWS:
            self._order_flow(intent)
        elif intent == "inform":
            self._inform()
        elif intent == "affirm":
            self._affirm()
        elif intent == "deny":
            self.reply.say("declined")
        elif intent in PRODUCT_INTENTS:
            self._product(intent)
        elif intent == "recommendation_request":
            self._recommend()
        else:
            self.reply.say("clarify")
        if not self.reply.strategy:
            self.reply.say("clarify")
        self.next.strategy = self.reply.strategy
        self.next.awaiting_slot = self.reply.awaiting_slot
        return self.reply.build(), self.next

    def _handoff(self) -> None:
        message = self.reply.fact("brand_profile", "handoff", self.brand.profile.handoff.message)
        self.reply.say("handoff", handoff_message=message)
        self.reply.handoff = True

    def _knowledge(self, topic: str) -> None:
        entry = self._best_entry(topic)
        if entry is None:
            self.reply.say("clarify")
            return
        self.reply.say("knowledge_answer", answer=self._answer(entry))

    def _answer(self, entry: KnowledgeEntry) -> str:
        return self.reply.fact("knowledge_base", entry.id, self.brand.knowledge.render(entry))

    def _best_entry(self, topic: str) -> KnowledgeEntry | None:
        entries = self.brand.knowledge.by_topic(topic)
        if not entries:
            return None
        text = self.event.text.lower()
        # The entry whose keywords the customer used most; ties keep the knowledge base's order.
        return max(entries, key=lambda e: sum(1 for k in e.keywords if k.lower() in text))

    def _stores(self) -> None:
        city = _entity(self.event, "city")
        stores = self.brand.knowledge.by_topic("stores")
        cities = self.reply.fact("knowledge_base", "stores", _join_options([s.facts.get("city", s.title) for s in stores]))
        if city:
            store = self.brand.knowledge.store_for_city(city)
            if store is not None:
                self.reply.say("knowledge_answer", answer=self._answer(store))
            else:
                said_city = self.reply.fact("conversation", self.event.event_id, city)
                self.reply.say("store_not_found", city=said_city, cities=cities, brand=self._brand_name())
        else:
            self.reply.say("store_list", cities=cities, brand=self._brand_name())

    def _promotions(self) -> None:
        promotions = self.brand.knowledge.by_topic("promotions")
        if not promotions:
            self.reply.say("no_promotions")
            return
        listed = " ".join(self._answer(p) for p in promotions[:3])
        self.reply.say("promotions", promotions=listed)

    def _order_flow(self, intent: str) -> None:
        order_id = _entity(self.event, "order_id") or self.event.context.slots.get("order_id")
        if not order_id:
            self.reply.say("ask_order_id")
            self.reply.awaiting_slot = "order_id"
            self.next.pending_intent = intent
            return
        order = self.reply.fact("conversation", "order_id", order_id)
        if intent == "order_status":
            entry = self._best_entry("order_status")
            self.reply.say("order_status", order_id=order, answer=self._answer(entry) if entry else "")
        elif intent == "return_refund":
            answers = [self._answer(e) for e in (self._best_entry("returns"), self._best_entry("refunds")) if e]
            self.reply.say("return_started", order_id=order, answer=" ".join(answers))
        else:
            contact = self._best_entry("contact")
            self.reply.say("complaint_noted", order_id=order, contact=self._answer(contact) if contact else "")

    def _inform(self) -> None:
        if self.bot.pending_intent in ORDER_FLOWS and (
            _entity(self.event, "order_id") or self.event.context.slots.get("order_id")
        ):
            self._order_flow(self.bot.pending_intent)
        elif self._item_in_focus() is not None:
            self._purchase(self._item_in_focus())  # type: ignore[arg-type]
        elif self.event.recommendations:
            self._recommend()
        else:
            self.reply.say("clarify")

    def _affirm(self) -> None:
        item = self._item(self.bot.pending_item_id) or self._item_in_focus()
        if self.bot.strategy == "confirm_order" and item is not None:
            chosen = self._chosen_options(item)
            self.reply.say(
                "order_link",
                product=self._product_name(item),
                chosen=self.reply.fact("conversation", "slots", ", ".join(chosen.values())) if chosen else "",
                url=self.reply.fact("catalog", item.id, self.brand.item_url(item)),
            )
        elif self.bot.strategy in ("product_info", "price", "ask_slot", "invalid_option") and item is not None:
            self._purchase(item)
        else:
            self.reply.say("acknowledge")

    def _product(self, intent: str) -> None:
        item = self._item_in_focus()
        if item is None:
            self._recommend()
            return
        if item.stock == 0:
            self.reply.say("out_of_stock", product=self._product_name(item))
            self._offer(self.event.recommendations, strategy="alternatives", exclude=item.id)
            return
        if intent == "purchase":
            self._purchase(item)
        elif intent == "price_inquiry":
            self.reply.say("price", product=self._product_name(item), price=self._price(item),
                           promotion_sentence=self._promotion_sentence(item))
            self.next.pending_item_id = item.id
        else:
            options = [
                f"{label}: " + _join_options(getattr(item.attributes, field_name))
                for _, field_name, label in PRODUCT_SLOTS if getattr(item.attributes, field_name)
            ]
            options_sentence = (" " + self.reply.fact("catalog", item.id, "Options: " + "; ".join(options) + ".")) if options else ""
            description = self.reply.fact("catalog", item.id, item.description) if item.description else ""
            self.reply.say("product_info", product=self._product_name(item), price=self._price(item),
                           description=description, options_sentence=options_sentence)
            self.next.pending_item_id = item.id

    def _purchase(self, item: Item) -> None:
        """Ask for each missing option in turn, then confirm with the price."""
        self.next.pending_intent = "purchase"
        self.next.pending_item_id = item.id
        if item.stock == 0:
            self.reply.say("out_of_stock", product=self._product_name(item))
            self._offer(self.event.recommendations, strategy="alternatives", exclude=item.id)
            return
        slots = self.event.context.slots
        for slot, field_name, label in PRODUCT_SLOTS:
            options = getattr(item.attributes, field_name)
            if len(options) < 2 and not (options and slot in slots):
                continue
            chosen = slots.get(slot)
            matching = [o for o in options if chosen and o.lower() == chosen.lower()]
            if chosen and not matching:
                self.reply.say("invalid_option", product=self._product_name(item),
                               chosen=self.reply.fact("conversation", slot, chosen),
                               options=self.reply.fact("catalog", item.id, _join_options(options)), slot_label=label)
                self.reply.awaiting_slot = slot
                return
            if not chosen:
                self.reply.say("ask_slot", product=self._product_name(item),
                               options=self.reply.fact("catalog", item.id, _join_options(options)), slot_label=label)
                self.reply.awaiting_slot = slot
                return
        chosen = self._chosen_options(item)
        self.reply.say("confirm_order", product=self._product_name(item), price=self._price(item),
                       chosen=self.reply.fact("conversation", "slots", ", ".join(chosen.values())) if chosen else "")

    def _recommend(self) -> None:
        if self._may_promote() and self.event.recommendations:
            self._offer(self.event.recommendations, strategy="present_recommendations")
        else:
            categories = self.reply.fact("catalog", "categories", _join_options(self.brand.catalog.categories))
            self.reply.say("ask_what", categories=categories)

    def _offer(self, recommendations: Sequence[Recommendation], strategy: str, exclude: str | None = None) -> None:
        if not self._may_promote():
            return
        shown = [r for r in recommendations if r.item_id != exclude][: self.brand.profile.promotion_rules.max_recommendations]
        if not shown:
            return
        self.reply.say(strategy, main=not self.reply.strategy)
        self.reply.list_recommendations(shown)
        self.next.offered_item_ids = [r.item_id for r in shown]

    # --- reading the turn ------------------------------------------------------------------------

    def _may_promote(self) -> bool:
        rules = self.brand.profile.promotion_rules
        return self.event.sentiment.label not in rules.never_when_sentiment and self.intent not in rules.never_for_intents

    def _item(self, item_id: str | None) -> Item | None:
        if not item_id:
            return None
        try:
            return self.brand.catalog.by_id(item_id)
        except KeyError:
            return None

    def _item_in_focus(self) -> Item | None:
        return self._item(_entity(self.event, "product") or self.event.context.product_in_focus or self.bot.pending_item_id)

    def _chosen_options(self, item: Item) -> dict[str, str]:
        slots = self.event.context.slots
        chosen = {}
        for slot, field_name, _ in PRODUCT_SLOTS:
            for option in getattr(item.attributes, field_name):
                if slots.get(slot, "").lower() == option.lower():
                    chosen[slot] = option
        return chosen

    def _product_name(self, item: Item) -> str:
        return self.reply.fact("catalog", item.id, item.name)

    def _price(self, item: Item) -> str:
        return self.reply.fact("catalog", item.id, self.brand.price(item.price))

    def _promotion_sentence(self, item: Item) -> str:
        if not item.promotion or not self._may_promote():
            return ""
        promotion = self.brand.knowledge.promotion(item.promotion)
        return " " + self._answer(promotion) if promotion is not None else ""

    def _brand_name(self) -> str:
        return self.reply.fact("brand_profile", "name", self.brand.profile.name)


def compose_reply(
    event: Recommended, bot: BotState, brand: Brand, choose: VariantChooser = stable_variant
) -> tuple[ComposedReply, BotState]:
    """The reply to one turn and what the bot remembers for the next."""
    return _Turn(event, bot, brand, choose).decide()
