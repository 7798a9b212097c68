"""recommender's core: which items to suggest for one understood, scored message, and why.

Pure: a unit test builds a `Recommender` from a catalog, item embeddings and (optionally) an ALS
model, and calls `recommend(request)`; the service reads the user's history and the popularity
counters from Redis and passes them in.

Policy. Only for shopping intents (`RECOMMENDING_INTENTS`); never when the message is negative or
a complaint (no upsell to an unhappy customer).

Candidates. In stock, not already bought by the user, in the requested category (the `category`
entity, else the category of the product in focus), offering the requested size / colour / storage
(this message's entities, else the dialogue's slots). When a product is in focus (a `product`
entity, else `context.product_in_focus`) and passes those filters it comes first, followed by
related items of other categories (what fits it, what is bought with it); when it does not (sold out, no size L), the others of
its category take its place.

Score. A weighted blend of three parts, each in [0, 1]: collaborative filtering (the ALS prediction
from the user's factors, recomputed from their clicks and purchases now, and item-item similarity of
ALS factors to the product in focus), content (cosine of the item's text embedding with the
message's, and with the product in focus), popularity (decayed clicks and purchases, "this week",
relative to the top item). Catalog complements of the product in focus (an accessory that fits
it, the same collection) and, when the customer asks about promotions, promoted items, are boosted
above the rest.

Views are impressions (the delivery reports every recommendation it sends), not choices: they do
not shape the user's factors, and an item shown and never clicked or bought has its blend halved
per showing (impression discounting), so "what other shoes?" gets other shoes and a shopper who
ignores what they see is shown something else a click can land on. Before, what was shown was
shown again (its views pulled the user's factors and the popularity towards it), and no taste was
learnt: see "Does it learn?" in docs/learning.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from elmo.contracts.events import Recommendation, Recommended, SentimentScored
from elmo.interactions import UserHistory
from elmo.link_settings import LinkSettings
from elmo.models.embeddings import vector_from_b64
from elmo.tracking_links import TrackedLink, tracking_url
from services.recommender.als_model import AlsModel
from services.recommender.content import Embedder
from services.recommender.item_index import ATTRIBUTE_FIELDS, ItemIndex

RECOMMENDING_INTENTS = frozenset(
    {"recommendation_request", "product_inquiry", "price_inquiry", "purchase", "promotion_inquiry", "inform"}
)
CONTENT_ONLY = "content-only"
# uuid5 namespace of tracking ids: the same input event and item always give the same id.
TRACKING_NAMESPACE = uuid.UUID("3b0e4f8e-9d0a-4a5e-8a0e-2f4b6c1d7e93")
# ALS item-item cosine above which "customers who bought X also bought this" is said (on the
# simulated shoppers, the 90th percentile of an item's similarities is ~0.3, its catalog complements 0.5-0.7).
ALSO_BOUGHT_MIN_SIMILARITY = 0.5
# Next to a product in focus, only items related to it: a catalog complement, bought together
# (ALS similarity above), or close in text (MiniLM cosine: "Pixel 9" / "Pixel 9 Case" 0.65,
# a charger / a phone ~0.4, a phone / a ski trip ~0.1).
CONTENT_RELATED_MIN = 0.4
# The blend is in [0, 1]; these lift structural matches above it, and the product in focus above all.
COMPLEMENT_BOOST = 1.0
FOCUS_BOOST = 2.0
# Purchases looked at for "customers who bought X" (the most recent ones).
ANCHORS_KEPT = 20
# Blend factor of an item per showing to the user without a click or purchase (0.25 measured the
# same on the simulated shoppers; 1 turns discounting off).
IGNORED_DISCOUNT = 0.5


@dataclass(frozen=True)
class BlendWeights:
    cf: float = 0.5
    content: float = 0.3
    popularity: float = 0.2


@dataclass(frozen=True)
class _NearFocus:
    text: np.ndarray  # cosine of every item's text embedding with the product in focus
    bought_with: np.ndarray | None  # cosine of ALS item factors (None: not in the model)


@dataclass(frozen=True)
class _ReasonContext:
    event: SentimentScored
    focus: int | None
    focus_first: bool
    wanted: dict[str, set[str]]
    active: dict[str, np.ndarray]
    anchors: list[int]  # items to say "customers who bought X" about: recent purchases, the focus
    has_user_vector: bool
    popularity: np.ndarray | None


@dataclass(frozen=True)
class RecommendationRequest:
    event: SentimentScored
    history: UserHistory = field(default_factory=UserHistory)
    # Decayed popularity per item, aligned with the index: `Recommender.popularity_vector(...)`.
    popularity: np.ndarray | None = None
    # The message's embedding (nlu's, or computed by the service when from another model).
    query: np.ndarray | None = None


def tracking_id_for(event_id: str, item_id: str) -> str:
    return uuid.uuid5(TRACKING_NAMESPACE, f"{event_id}/{item_id}").hex


def should_recommend(event: SentimentScored) -> bool:
    return event.intent.name in RECOMMENDING_INTENTS and event.intent.name != "complaint" and event.sentiment.label != "negative"


def requested_attributes(event: SentimentScored) -> dict[str, set[str]]:
    """Size, colour and storage asked for: this message's entities, else the dialogue's slots."""
    requested: dict[str, set[str]] = {}
    for entity in event.entities:
        if entity.type in ATTRIBUTE_FIELDS:
            requested.setdefault(entity.type, set()).add(entity.normalized or entity.value)
    for attribute in ATTRIBUTE_FIELDS:
        if attribute not in requested and event.context.slots.get(attribute):
            requested[attribute] = {event.context.slots[attribute]}
    return {attribute: requested[attribute] for attribute in ATTRIBUTE_FIELDS if attribute in requested}


def describe_match(matched: Sequence[tuple[str, str]]) -> str:
    words = [f"size {value}" if attribute == "size" else value for attribute, value in matched]
    return f"matches '{', '.join(words)}'"


def _entity(event: SentimentScored, entity_type: str) -> str | None:
    for entity in event.entities:
        if entity.type == entity_type:
            return entity.normalized or entity.value
    return None


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class Recommender:
    def __init__(
        self,
        index: ItemIndex,
        item_embeddings: np.ndarray,
        model: AlsModel | None = None,
        weights: BlendWeights = BlendWeights(),
        links: LinkSettings | None = None,
        top_k: int = 3,
    ) -> None:
        if item_embeddings.shape[0] != len(index):
            raise ValueError(f"{item_embeddings.shape[0]} item embeddings for {len(index)} items")
        self.index = index
        self.embeddings = np.ascontiguousarray(item_embeddings, dtype=np.float32)
        self.model = model
        self.weights = weights
        self.links = links or LinkSettings()
        self.top_k = top_k
        # ALS factors aligned with the index (zero rows for items the model has not seen).
        k = model.factors if model else 1
        self._factors = np.zeros((len(index), k), dtype=np.float32)
        self._in_model = np.zeros(len(index), dtype=bool)
        if model is not None:
            for row, item_id in enumerate(index.ids):
                if (model_row := model.item_row.get(item_id)) is not None:
                    self._factors[row] = model.item_factors[model_row]
                    self._in_model[row] = True
        self._unit_factors = _unit_rows(self._factors)

    @property
    def version(self) -> str:
        return self.model.version if self.model is not None else CONTENT_ONLY

    def popularity_vector(self, scores: Mapping[str, float]) -> np.ndarray:
        vector = np.zeros(len(self.index), dtype=np.float32)
        for item_id, score in scores.items():
            if (row := self.index.row.get(item_id)) is not None:
                vector[row] = score
        return vector

    def user_vector(self, user_id: str, history: UserHistory) -> np.ndarray | None:
        """ALS factors of the user from their clicks and purchases now; the fitted ones if there
        are none. Views are left out: the user did not choose what they were shown."""
        if self.model is None:
            return None
        if (engaged := history.engagement) and (vector := self.model.user_vector(engaged)) is not None:
            return vector
        return self.model.stored_user_vector(user_id)

    def ignored(self, history: UserHistory) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the items shown to the user and never clicked or bought, and how often shown."""
        engaged, rows, times = history.engagement, [], []
        for item, count in history.views.items():
            if item not in engaged and (row := self.index.row.get(item)) is not None:
                rows.append(row)
                times.append(count)
        return np.array(rows, dtype=np.int64), np.array(times, dtype=np.float32)

    # --- the decision --------------------------------------------------------------------------

    def recommend(self, request: RecommendationRequest) -> list[Recommendation]:
        event = request.event
        if not should_recommend(event):
            return []
        index = self.index
        wanted = requested_attributes(event)
        focus = index.row.get(_entity(event, "product") or event.context.product_in_focus or "")
        bought = [index.row[i] for i in reversed(request.history.purchases_by_time()) if i in index.row]
        near_focus = self._near(focus)
        candidates, boost, focus_first = self._candidates(event, wanted, focus, bought, near_focus)

        user = self.user_vector(event.user_id, request.history)
        active = self._blend_parts(user, request, near_focus)
        total_weight = sum(getattr(self.weights, name) for name in active) or 1.0
        blend = np.zeros(len(index), dtype=np.float32)
        for name, values in active.items():
            blend += getattr(self.weights, name) / total_weight * values
        shown = np.zeros(len(index), dtype=np.float32)
        ignored, times = self.ignored(request.history)
        if ignored.size:
            shown[ignored] = times
            blend[ignored] *= IGNORED_DISCOUNT**times
        score = boost + blend

        chosen: list[int] = []
        if focus_first:
            score[focus] += FOCUS_BOOST  # type: ignore[index]
            chosen.append(focus)  # type: ignore[arg-type]
        chosen += self._best(candidates, score, self.top_k - len(chosen), shown)

        anchors = [row for row in bought[:ANCHORS_KEPT] if self._in_model[row]]
        if focus is not None and self._in_model[focus]:
            anchors.append(focus)
        context = _ReasonContext(event, focus, focus_first, wanted, active, anchors, user is not None, request.popularity)
        return [self._recommendation(event, row, float(score[row]), self._reason(row, context)) for row in chosen]

    def _near(self, focus: int | None) -> _NearFocus | None:
        """Every item's similarity to the product in focus, in text and in ALS factors (once per request)."""
        if focus is None:
            return None
        bought_with = self._unit_factors @ self._unit_factors[focus] if self._in_model[focus] else None
        return _NearFocus(self.embeddings @ self.embeddings[focus], bought_with)

    def _candidates(
        self, event: SentimentScored, wanted: dict[str, set[str]], focus: int | None, bought: list[int], near: _NearFocus | None
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Which items may be suggested, the boost of structural matches, and whether the product
        in focus leads."""
        index = self.index
        available = index.in_stock.copy()
        available[bought] = False
        category = _entity(event, "category") or (index.items[focus].category if focus is not None else None)
        in_category = index.category_mask(category) if category else np.ones(len(index), dtype=bool)
        strict = index.attribute_mask(wanted, strict=True)
        boost = np.zeros(len(index), dtype=np.float32)
        focus_first = focus is not None and bool(available[focus] and in_category[focus] and strict[focus])
        complements = index.complement_mask(focus) if focus is not None else np.zeros(len(index), dtype=bool)
        boost += COMPLEMENT_BOOST * complements
        if focus_first and near is not None:
            # The product asked about, then related items of other categories.
            related = complements | (near.text >= CONTENT_RELATED_MIN)
            if near.bought_with is not None:
                related |= near.bought_with >= ALSO_BOUGHT_MIN_SIMILARITY
            other_category = index.category_codes != index.category_codes[focus]
            candidates = available & other_category & related & index.attribute_mask(wanted, strict=False)
        else:
            # Its category (or the one asked for); what fits it first ("any cases for it?").
            candidates = available & in_category & strict
            if focus is not None:
                candidates[focus] = False
        if event.intent.name == "promotion_inquiry":
            boost += COMPLEMENT_BOOST * index.on_promotion
        return candidates, boost, focus_first

    @staticmethod
    def _best(candidates: np.ndarray, score: np.ndarray, count: int, shown: np.ndarray) -> list[int]:
        rows = np.flatnonzero(candidates)
        if count <= 0 or rows.size == 0:
            return []
        # Highest score first; ties (a cold user without a query: the blend is 0 everywhere) to the
        # item shown least, then by catalog order, so the answer is deterministic.
        key = score - 1e-6 * shown
        if rows.size > 4 * count:
            rows = rows[np.argpartition(-key[rows], 4 * count)[: 4 * count]]
        rows = rows[np.lexsort((rows, -key[rows]))]
        return [int(row) for row in rows[:count]]

    def _blend_parts(self, user: np.ndarray | None, request: RecommendationRequest, near: _NearFocus | None) -> dict[str, np.ndarray]:
        """The parts of the blend that have something to say (and a weight), each on an absolute
        [0, 1] scale so scores mean the same across requests: ALS predicts preference (0 or 1),
        cosines are clipped at 0, popularity is relative to the most popular item."""
        parts: dict[str, np.ndarray] = {}
        cf_parts = []
        if user is not None:
            cf_parts.append(np.clip(self._factors @ user, 0.0, 1.0))
        if near is not None and near.bought_with is not None:
            cf_parts.append(np.clip(near.bought_with, 0.0, 1.0))
        if cf_parts:
            parts["cf"] = np.mean(cf_parts, axis=0)

        similarities = []
        if request.query is not None:
            similarities.append(self.embeddings @ np.asarray(request.query, dtype=np.float32))
        if near is not None:
            similarities.append(near.text)
        if similarities:
            parts["content"] = np.clip(np.maximum.reduce(similarities), 0.0, 1.0)

        if request.popularity is not None and (top := float(request.popularity.max(initial=0.0))) > 0:
            parts["popularity"] = np.log1p(np.maximum(request.popularity, 0.0)) / np.log1p(top)
        return {name: values for name, values in parts.items() if getattr(self.weights, name) > 0}

    def _reason(self, row: int, context: _ReasonContext) -> str:
        index, focus = self.index, context.focus
        item = index.items[row]
        matched = index.matched_values(row, context.wanted) if context.wanted else []
        if row == focus:
            return describe_match(matched) if matched else f"the {item.name} you asked about"
        if focus is not None and (why := index.complement_reason(focus, row)):
            return why
        if context.event.intent.name == "promotion_inquiry" and item.promotion:
            return "on promotion"
        if matched:
            return describe_match(matched)
        # Otherwise the part of the blend that contributed most, if it can say something true.
        contributions = {name: getattr(self.weights, name) * float(values[row]) for name, values in context.active.items()}
        for name in sorted(contributions, key=lambda n: -contributions[n]):
            if name == "cf" and contributions[name] > 0:
                if context.anchors:
                    similarity = self._unit_factors[context.anchors] @ self._unit_factors[row]
                    best = int(np.argmax(similarity))
                    if similarity[best] >= ALSO_BOUGHT_MIN_SIMILARITY:
                        return f"customers who bought {index.items[context.anchors[best]].name} also bought this"
                if context.has_user_vector:
                    return "picked for you from what you looked at"
            elif name == "popularity" and context.popularity is not None and context.popularity[row] > 0:
                return "popular this week"
            elif name == "content":
                break
        if focus is not None and not context.focus_first:
            return f"similar to the {index.items[focus].name}"
        return "similar to what you asked for"

    def _recommendation(self, event: SentimentScored, row: int, score: float, reason: str) -> Recommendation:
        item = self.index.items[row]
        tracking_id = tracking_id_for(event.event_id, item.id)
        link = TrackedLink(
            tracking_id=tracking_id,
            item_id=item.id,
            user_id=event.user_id,
            conversation_id=event.conversation_id,
            channel=event.channel.value,
        )
        return Recommendation(
            item_id=item.id,
            name=item.name,
            score=round(score, 4),
            reason=reason,
            tracking_id=tracking_id,
            price=item.price,
            url=tracking_url(self.links.tracking_base_url, link, self.links.tracking_secret),
        )


def query_embeddings(events: Sequence[SentimentScored], embedder: Embedder | None) -> list[np.ndarray | None]:
    """nlu's embedding when it comes from the same model as the item vectors, else computed here
    (one batched call); None without an embedder."""
    version = embedder.version if embedder is not None else None
    queries: list[np.ndarray | None] = [
        vector_from_b64(e.embedding_b64) if e.embedding_b64 and e.embedding_model == version else None for e in events
    ]
    missing = [i for i, query in enumerate(queries) if query is None]
    if missing and embedder is not None:
        for i, vector in zip(missing, embedder.encode([events[i].text for i in missing]), strict=True):
            queries[i] = vector
    return queries


@dataclass(frozen=True)
class BatchInputs:
    """What the service read for a batch: histories by user, popularity, one embedding per event."""

    histories: Mapping[str, UserHistory]
    popularity: np.ndarray | None
    queries: Sequence[np.ndarray | None]


def recommend_batch(events: Sequence[SentimentScored], recommender: Recommender, inputs: BatchInputs) -> list[Recommended]:
    outputs = []
    for event, query in zip(events, inputs.queries, strict=True):
        request = RecommendationRequest(event, inputs.histories.get(event.user_id, UserHistory()), inputs.popularity, query)
        outputs.append(
            event.derive(Recommended, recommendations=recommender.recommend(request), recommender_model_version=recommender.version)
        )
    return outputs
