"""`elmo simulate`: simulated shoppers with hidden tastes talk to the running chain and react.

Does the chain learn from reactions? Each simulated shopper has, unseen by the chain, favourite
categories, liked tags and a price band (where in a category's price range they buy). A session
is a new conversation of a few turns that only name a category ("can you recommend some shoes?");
the shopper reads the reply's recommendations and reacts by its taste: a liked item is often
clicked and sometimes bought (once: a bought item is not wanted again), another rarely clicked; the reply is rated +1 if a liked item was
shown, else -1. With learning on the reactions go to `elmo.feedback` (as a shop front-end would
send them), so the feedback-trainer records them and the recommender reads them on the next
request; with learning off they are not sent. Views are sent in both arms: the front-end reports
a `recommendation_viewed` for each recommendation it shows, as the delivery service does for the
platforms it sends to (it sends nothing on the web channel these shoppers use).

Both arms use the same seed (the same shoppers, messages and dice), with user ids of their own
so no history is shared. Reactions are decided by `Shopper.react` from a generator seeded by
(seed, shopper, session, turn): the same seed gives the same decisions for the same replies.

After the arms, probes measure how fast a reaction reaches a reply: a fresh shopper asks, buys the
first item recommended, and asks again (each time in a new conversation) until a reply no longer
offers it (the recommender never offers what a user bought); and a click is timed to the moment
its weight is in the user's interaction history in Redis, which the recommender reads per request.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from elmo.brand.catalog import Catalog, Item
from elmo.contracts import topics
from elmo.contracts.events import Channel, Feedback, FeedbackKind
from elmo.tools.conversation import ChainClient

CHANNEL = Channel.WEB
# How shoppers ask; only the category is said, the rest of the taste stays hidden.
FIRST_TURNS = ("can you recommend some {category}?", "I'm looking for {category}, what would you suggest?")
LATER_TURNS = ("what other {category} would you recommend?", "any other {category} you could suggest?")


@dataclass(frozen=True)
class ReactionOdds:
    click_liked: float = 0.7
    purchase_liked: float = 0.35  # of a clicked liked item
    click_other: float = 0.05


@dataclass(frozen=True)
class Taste:
    categories: tuple[str, ...]  # favourite first
    tags: frozenset[str]
    price_band: tuple[float, float]  # quantiles of a category's price range, e.g. (0.0, 0.5) = the cheaper half


@dataclass(frozen=True)
class Reaction:
    item_id: str
    tracking_id: str
    liked: bool
    clicked: bool
    purchased: bool


def price_quantiles(catalog: Catalog) -> dict[str, float]:
    """Each item's place in its category's price range, in (0, 1): cheapest near 0."""
    quantiles: dict[str, float] = {}
    for category in catalog.categories:
        items = sorted(catalog.in_category(category), key=lambda item: (item.price, item.id))
        for rank, item in enumerate(items):
            quantiles[item.id] = (rank + 0.5) / len(items)
    return quantiles


def draw_taste(catalog: Catalog, rng: random.Random) -> Taste:
    """One or two favourite categories, two or three tags common in each, a half of the price range."""
    categories = tuple(rng.sample(catalog.categories, rng.choice((1, 2))))
    tags: set[str] = set()
    for category in categories:
        counts: dict[str, int] = {}
        for item in catalog.in_category(category):
            for tag in item.tags:
                counts[tag] = counts.get(tag, 0) + 1
        common = sorted(counts, key=lambda tag: (-counts[tag], tag))[:12]
        tags.update(rng.sample(common, min(len(common), rng.choice((2, 3)))))
    low = rng.choice((0.0, 0.25, 0.5))
    return Taste(categories, frozenset(tags), (low, low + 0.5))


@dataclass
class Shopper:
    index: int
    taste: Taste
    catalog: Catalog
    quantiles: dict[str, float]
    odds: ReactionOdds = field(default_factory=ReactionOdds)
    # What it bought: wanted no more, whether or not the chain was told (so arms compare fairly).
    bought: set[str] = field(default_factory=set)

    def likes(self, item: Item | None) -> bool:
        if item is None or item.category not in self.taste.categories:
            return False
        low, high = self.taste.price_band
        return bool(self.taste.tags & set(item.tags)) and low <= self.quantiles[item.id] <= high

    def liked_items(self) -> list[str]:
        return [item.id for item in self.catalog.items if item.in_stock and self.likes(item)]

    def session_category(self, rng: random.Random) -> str:
        categories = self.taste.categories
        return categories[0] if len(categories) == 1 or rng.random() < 0.6 else categories[1]

    def react(self, recommendations: Sequence[dict], rng: random.Random) -> list[Reaction]:
        reactions = []
        for rec in recommendations:
            liked = rec["item_id"] not in self.bought and self.likes(self.catalog.get(rec["item_id"]))
            clicked = rng.random() < (self.odds.click_liked if liked else self.odds.click_other)
            purchased = clicked and liked and rng.random() < self.odds.purchase_liked
            if purchased:
                self.bought.add(rec["item_id"])
            reactions.append(Reaction(rec["item_id"], rec.get("tracking_id", ""), liked, clicked, purchased))
        return reactions


def shoppers(catalog: Catalog, count: int, seed: int) -> list[Shopper]:
    quantiles = price_quantiles(catalog)
    return [Shopper(i, draw_taste(catalog, random.Random(f"{seed}/taste/{i}")), catalog, quantiles) for i in range(count)]


def turn_rng(seed: int, shopper: int, session: int, turn: int) -> random.Random:
    return random.Random(f"{seed}/{shopper}/{session}/{turn}")


def about_reply(reply: dict, user_id: str) -> dict:
    """The fields every feedback event about `reply` carries."""
    return {"conversation_id": reply["conversation_id"], "user_id": user_id, "channel": CHANNEL, "reply_event_id": reply["event_id"]}


def feedback_events(reactions: Sequence[Reaction], reply: dict, user_id: str) -> list[Feedback]:
    """What a shop front-end would send for these reactions: clicks, purchases and one rating."""
    common = about_reply(reply, user_id)
    events = []
    for reaction in reactions:
        link = {"item_id": reaction.item_id, "tracking_id": reaction.tracking_id or None}
        if reaction.clicked:
            events.append(Feedback(kind=FeedbackKind.RECOMMENDATION_CLICKED, **common, **link))
        if reaction.purchased:
            events.append(Feedback(kind=FeedbackKind.RECOMMENDATION_PURCHASED, **common, **link))
    if reactions:
        events.append(Feedback(kind=FeedbackKind.REPLY_RATED, rating=1 if any(r.liked for r in reactions) else -1, **common))
    return events


def view_events(reply: dict, user_id: str) -> list[Feedback]:
    """What the front-end reports on showing a reply: one view per recommendation (impressions)."""
    common = about_reply(reply, user_id)
    return [
        Feedback(kind=FeedbackKind.RECOMMENDATION_VIEWED, item_id=r["item_id"], tracking_id=r.get("tracking_id") or None, **common)
        for r in reply.get("recommendations", [])
    ]


def send_feedback(client: ChainClient, events: Sequence[Feedback]) -> None:
    for event in events:
        client.producer.send(topics.FEEDBACK.name, key=event.key, value=event.model_dump_json().encode())
    client.producer.flush(timeout=10)


@dataclass
class Window:
    """Totals of one session index over all shoppers of an arm."""

    turns: int = 0
    unanswered: int = 0
    shown: int = 0
    liked: int = 0
    clicks: int = 0
    purchases: int = 0

    def add(self, other: Window) -> None:
        for name in ("turns", "unanswered", "shown", "liked", "clicks", "purchases"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def rates(self) -> dict[str, float]:
        shown = self.shown or 1
        return {"ctr": self.clicks / shown, "purchase_rate": self.purchases / shown, "liked_share": self.liked / shown}


@dataclass
class SimulationConfig:
    users: int = 20
    sessions: int = 8
    turns: int = 2
    seed: int = 7
    think_s: float = 1.0  # between reacting and the next message, as a person would take
    workers: int = 4
    odds: ReactionOdds = field(default_factory=ReactionOdds)


def run_arm(
    bootstrap: str, catalog: Catalog, config: SimulationConfig, learning: bool, run_id: str, echo: Callable[[str], None] = print
) -> list[Window]:
    """Every shopper's sessions through the chain; returns totals per session index."""
    people = shoppers(catalog, config.users, config.seed)
    for person in people:
        person.odds = config.odds
    prefix = f"sim-{run_id}-{'on' if learning else 'off'}"
    windows = [Window() for _ in range(config.sessions)]
    lock = threading.Lock()

    def play(group: list[Shopper]) -> None:
        with ChainClient(bootstrap, reply_timeout_s=60.0) as client:
            for person in group:
                user_id = f"{prefix}-u{person.index}"
                for session in range(config.sessions):
                    window = Window()
                    category = person.session_category(turn_rng(config.seed, person.index, session, -1))
                    conversation_id = f"{user_id}-s{session}"
                    for turn in range(config.turns):
                        rng = turn_rng(config.seed, person.index, session, turn)
                        text = rng.choice(FIRST_TURNS if turn == 0 else LATER_TURNS).format(category=category)
                        reply = client.say(conversation_id, user_id, CHANNEL.value, text).reply
                        window.turns += 1
                        if reply is None:
                            window.unanswered += 1
                            continue
                        reactions = person.react(reply.get("recommendations", []), rng)
                        window.shown += len(reactions)
                        window.liked += sum(r.liked for r in reactions)
                        window.clicks += sum(r.clicked for r in reactions)
                        window.purchases += sum(r.purchased for r in reactions)
                        shown = view_events(reply, user_id)
                        send_feedback(client, shown + feedback_events(reactions, reply, user_id) if learning else shown)
                        time.sleep(config.think_s)
                    with lock:
                        windows[session].add(window)

    groups = [people[i :: config.workers] for i in range(config.workers) if people[i :: config.workers]]
    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(play, groups))
    echo(f"arm learning={'on' if learning else 'off'} done (users {prefix}-u*)")
    return windows


@dataclass
class ProbeResult:
    kind: str  # "purchase": to the first reply without the item; "click": to the weight in Redis
    seconds: float | None
    asks: int = 0


def probe_purchase(bootstrap: str, shopper: Shopper, run_id: str, number: int, timeout_s: float = 20.0) -> ProbeResult:
    """Buy the first item of a reply, then ask again until a reply no longer offers it."""
    user_id = f"sim-{run_id}-probe-buy{number}"
    category = shopper.taste.categories[0]
    text = FIRST_TURNS[0].format(category=category)
    with ChainClient(bootstrap, reply_timeout_s=60.0) as client:
        first = client.say(f"{user_id}-c0", user_id, CHANNEL.value, text).reply
        # A control: asked again before any purchase, the item must still be offered (views of the
        # first reply alone must not drop it), else its absence later would prove nothing.
        reply = client.say(f"{user_id}-cc", user_id, CHANNEL.value, text).reply
        if not first or not reply or not reply.get("recommendations"):
            return ProbeResult("purchase", None)
        offered_twice = [r for r in reply["recommendations"] if r["item_id"] in {f["item_id"] for f in first.get("recommendations", [])}]
        if not offered_twice:
            return ProbeResult("purchase", None)
        bought = offered_twice[0]
        reaction = Reaction(bought["item_id"], bought.get("tracking_id", ""), True, True, True)
        events = [e for e in feedback_events([reaction], reply, user_id) if e.kind is FeedbackKind.RECOMMENDATION_PURCHASED]
        sent_at = time.monotonic()
        send_feedback(client, events)
        asks = 0
        while time.monotonic() - sent_at < timeout_s:
            asks += 1
            again = client.say(f"{user_id}-c{asks}", user_id, CHANNEL.value, text).reply
            if again and bought["item_id"] not in {r["item_id"] for r in again.get("recommendations", [])}:
                return ProbeResult("purchase", time.monotonic() - sent_at, asks)
    return ProbeResult("purchase", None, asks)


def probe_click(bootstrap: str, redis_url: str, shopper: Shopper, run_id: str, number: int, timeout_s: float = 20.0) -> ProbeResult:
    """Click the first item of a reply; time until the click's weight is in the user's history."""
    import redis

    from elmo.interactions import WEIGHTS, InteractionKind, InteractionSettings

    user_id = f"sim-{run_id}-probe-click{number}"
    key = f"{InteractionSettings().interactions_key_prefix}:weights:{user_id}"
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with ChainClient(bootstrap, reply_timeout_s=60.0) as client:
        reply = client.say(f"{user_id}-c0", user_id, CHANNEL.value, FIRST_TURNS[0].format(category=shopper.taste.categories[0])).reply
        if not reply or not reply.get("recommendations"):
            return ProbeResult("click", None)
        clicked = reply["recommendations"][0]
        time.sleep(1.0)  # let the delivery's view of this reply land first, so it is not taken for the click
        before = float(store.hget(key, clicked["item_id"]) or 0.0)
        reaction = Reaction(clicked["item_id"], clicked.get("tracking_id", ""), True, True, False)
        events = [e for e in feedback_events([reaction], reply, user_id) if e.kind is FeedbackKind.RECOMMENDATION_CLICKED]
        sent_at = time.monotonic()
        send_feedback(client, events)
        polls = 0
        while time.monotonic() - sent_at < timeout_s:
            polls += 1
            if float(store.hget(key, clicked["item_id"]) or 0.0) >= before + WEIGHTS[InteractionKind.CLICK]:
                return ProbeResult("click", time.monotonic() - sent_at, polls)
            time.sleep(0.02)
    return ProbeResult("click", None, polls)


@dataclass
class SimulationReport:
    run_id: str
    config: dict
    arms: dict[str, list[dict]] = field(default_factory=dict)
    probes: list[ProbeResult] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "config": self.config, "arms": self.arms, "probes": [asdict(p) for p in self.probes]}, indent=1)


def window_rows(windows: Sequence[Window]) -> list[dict]:
    return [{"session": i, **asdict(w), **{k: round(v, 4) for k, v in w.rates().items()}} for i, w in enumerate(windows)]


def describe(report: SimulationReport) -> list[str]:
    """The table `elmo simulate` prints: per session, on vs off."""
    lines = []
    arms = report.arms
    header = f"{'session':>7} " + " ".join(f"{arm + ' ' + m:>16}" for arm in arms for m in ("ctr", "buy", "liked"))
    lines.append(header)
    sessions = max(len(rows) for rows in arms.values()) if arms else 0
    for s in range(sessions):
        cells = []
        for rows in arms.values():
            row = rows[s]
            cells += [f"{row['ctr']:>16.3f}", f"{row['purchase_rate']:>16.3f}", f"{row['liked_share']:>16.3f}"]
        lines.append(f"{s:>7} " + " ".join(cells))
    for arm, rows in arms.items():
        total = Window()
        for row in rows:
            total.add(Window(**{k: row[k] for k in ("turns", "unanswered", "shown", "liked", "clicks", "purchases")}))
        half = len(rows) // 2
        late = Window()
        for row in rows[half:]:
            late.add(Window(**{k: row[k] for k in ("turns", "unanswered", "shown", "liked", "clicks", "purchases")}))
        r, lr = total.rates(), late.rates()
        lines.append(
            f"{arm}: turns {total.turns} (unanswered {total.unanswered}), shown {total.shown}; all sessions ctr {r['ctr']:.3f} "
            f"buy {r['purchase_rate']:.3f} liked {r['liked_share']:.3f}; sessions {half}+ ctr {lr['ctr']:.3f} "
            f"buy {lr['purchase_rate']:.3f} liked {lr['liked_share']:.3f}"
        )
    for probe in report.probes:
        seconds = "not seen" if probe.seconds is None else f"{probe.seconds:.2f} s"
        lines.append(f"probe {probe.kind}: {seconds} ({probe.asks} {'asks' if probe.kind == 'purchase' else 'polls'})")
    return lines
