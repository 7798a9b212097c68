"""Collaborative filtering: implicit-feedback ALS (Hu, Koren & Volinsky 2008) with `implicit`.

Fitting: a users x items matrix of accumulated interaction weights (click 4, purchase 10,
`elmo.interactions.WEIGHTS`) gives the confidence matrix, c = 1 + alpha * weight; implicit's CPU solver
(conjugate gradient) fits user and item factors. Each user's and each item's update is independent
of the others in its half-step, so the fit is deterministic for a seed whatever the thread count.
Views are not fitted on: they are impressions of what the recommender chose to show (the delivery
reports one per recommendation sent), and fitting them would teach it to show that again; the
serving side leaves them out of the user's factors the same way (`UserHistory.engagement`).

Serving: a user's factors are recomputed from their current interactions at request time, with
one k x k solve against the precomputed YtY: the normal equations of implicit's `recalculate_user`,
same vector to 2e-7, measured at 0.040 ms p50 against its 0.070 ms (64 factors, one thread, the
CSR row it needs included; tests/load/bench_recommender.py). So a click or purchase recorded
seconds ago moves the next recommendation without a refit.

Artefact (`recommender-als` in the model store): `als.npz` (item and user factors, item and user
ids) and meta.json (hyper-parameters, metrics, what it was trained on).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from elmo.interactions import Interaction, InteractionKind, UserHistory
from elmo.models.artifacts import ArtifactStore, ModelVersion
from elmo.models.registry import Evaluator

MODEL_KIND = "recommender-als"
ARTEFACT_FILE = "als.npz"


@dataclass(frozen=True)
class AlsParams:
    # Chosen on simulated shoppers over the brand catalog (237 items, 5,000 users; held-out
    # hit-rate@10, popularity 0.15): 32 factors, alpha 0.5 gave 0.36; 16 factors 0.36; 64 factors
    # 0.32; alpha 0.1 0.33, alpha 2 0.34; regularization 0.05 or 1 within 0.01. Larger catalogs
    # want more factors (2,000 items: 64 factors 0.26 against 32 factors 0.23).
    factors: int = 32
    regularization: float = 1.0
    alpha: float = 0.5
    iterations: int = 15
    seed: int = 13


@dataclass
class InteractionLog:
    """Interactions as parallel arrays: one row per (user, item) cell or per event; ids by index."""

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray  # int32 index into user_ids
    items: np.ndarray  # int32 index into item_ids
    weights: np.ndarray  # float32
    times: np.ndarray  # float64 epoch seconds (purchases: when bought)
    purchases: np.ndarray  # bool
    # Optional order of purchases with equal times (a log replayed from Kafka: offset order);
    # without it, ties are broken by item index.
    sequence: np.ndarray | None = None  # int64

    @classmethod
    def from_histories(cls, histories: Mapping[str, UserHistory], item_ids: Sequence[str] | None = None) -> InteractionLog:
        """One row per (user, item) cell of clicks and purchases (`UserHistory.engagement`: views
        are impressions, not preference); `item_ids` fixes the item space (others are dropped)."""
        known = list(item_ids) if item_ids is not None else sorted({i for h in histories.values() for i in h.engagement})
        column = {item: position for position, item in enumerate(known)}
        user_ids = sorted(histories)
        users, items, weights, times, purchases = [], [], [], [], []
        for row, user in enumerate(user_ids):
            history = histories[user]
            for item, weight in history.engagement.items():
                if item in column:
                    users.append(row)
                    items.append(column[item])
                    weights.append(weight)
                    times.append(history.purchases.get(item, 0.0))
                    purchases.append(item in history.purchases)
        return cls(
            user_ids,
            known,
            np.array(users, dtype=np.int32),
            np.array(items, dtype=np.int32),
            np.array(weights, dtype=np.float32),
            np.array(times, dtype=np.float64),
            np.array(purchases, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self) -> sp.csr_matrix:
        """users x items, weights of repeated cells summed."""
        shape = (len(self.user_ids), len(self.item_ids))
        matrix = sp.csr_matrix((self.weights, (self.users, self.items)), shape=shape, dtype=np.float32)
        matrix.sum_duplicates()
        return matrix

    def select(self, keep: np.ndarray) -> InteractionLog:
        return InteractionLog(
            self.user_ids, self.item_ids, self.users[keep], self.items[keep], self.weights[keep], self.times[keep], self.purchases[keep],
            None if self.sequence is None else self.sequence[keep],
        )  # fmt: skip


@dataclass(frozen=True)
class HeldOut:
    """The split the metrics use: each evaluated user's last purchase, removed from training."""

    train: InteractionLog
    users: np.ndarray  # user index
    items: np.ndarray  # the held-out item of that user


def hold_out_last_purchase(log: InteractionLog, min_purchases: int = 2, eligible: np.ndarray | None = None) -> HeldOut:
    """For users with at least `min_purchases` distinct purchased items, the latest one is held out:
    every interaction of that user with that item leaves the training data, so it must be predicted
    (not merely recalled from a click). `eligible` (a mask over the rows) restricts which purchases
    may be held out (the latest eligible one of each user); the count of purchased items is over all."""
    purchased = np.flatnonzero(log.purchases)
    bought = purchased if eligible is None else np.flatnonzero(log.purchases & eligible)
    # Latest purchase per user: sort by (user, time, item) and keep each user's last row.
    tiebreak = log.items[bought] if log.sequence is None else log.sequence[bought]
    order = bought[np.lexsort((log.items[bought], tiebreak, log.times[bought], log.users[bought]))]
    users_sorted = log.users[order]
    last = np.flatnonzero(np.r_[users_sorted[1:] != users_sorted[:-1], True]) if len(order) else np.array([], dtype=np.int64)
    distinct = {}
    for user, item in zip(log.users[purchased], log.items[purchased], strict=True):
        distinct.setdefault(int(user), set()).add(int(item))
    held_users, held_items = [], []
    for position in last:
        user, item = int(log.users[order[position]]), int(log.items[order[position]])
        if len(distinct[user]) >= min_purchases:
            held_users.append(user)
            held_items.append(item)
    held_users_a = np.array(held_users, dtype=np.int64)
    held_items_a = np.array(held_items, dtype=np.int64)
    # Drop every row of a held-out (user, item) pair.
    n_items = len(log.item_ids)
    held_keys = held_users_a * n_items + held_items_a
    row_keys = log.users.astype(np.int64) * n_items + log.items
    keep = ~np.isin(row_keys, held_keys)
    return HeldOut(log.select(keep), held_users_a, held_items_a)


class AlsModel:
    def __init__(
        self,
        item_ids: Sequence[str],
        item_factors: np.ndarray,
        user_ids: Sequence[str],
        user_factors: np.ndarray,
        params: AlsParams,
        version: str = "unsaved",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.item_ids = list(item_ids)
        self.user_ids = list(user_ids)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.params = params
        self.version = version
        self.meta = meta or {}
        self.item_row = {item: row for row, item in enumerate(self.item_ids)}
        self.user_row = {user: row for row, user in enumerate(self.user_ids)}
        k = self.item_factors.shape[1]
        # Precomputed once: every warm-user solve starts from YtY + lambda*I.
        self._base = (self.item_factors.T @ self.item_factors + params.regularization * np.eye(k, dtype=np.float32)).astype(np.float32)

    @property
    def factors(self) -> int:
        return self.item_factors.shape[1]

    # --- fitting -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, log: InteractionLog, params: AlsParams = AlsParams(), threads: int = 1) -> AlsModel:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes.
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                alpha=1.0,  # confidence is computed here: see `confidence`
                iterations=params.iterations,
                random_state=params.seed,
                num_threads=threads,
            )
            matrix = log.matrix()
            matrix.data = confidence(matrix.data, params.alpha)
            als.fit(matrix, show_progress=False)
        return cls(log.item_ids, als.item_factors, log.user_ids, als.user_factors, params)

    # --- serving -------------------------------------------------------------------------------

    def user_vector(self, weights: Mapping[str, float]) -> np.ndarray | None:
        """The user's factors from their interactions now; None when none of the items is known.

        Normal equations of implicit ALS with confidence c (see `confidence`):
        (YtY + lambda*I + sum_i (c_i - 1) y_i y_i^T) x = sum_i c_i y_i.
        """
        rows = [self.item_row[item] for item in weights if item in self.item_row]
        if not rows:
            return None
        weight = np.fromiter((weights[self.item_ids[row]] for row in rows), dtype=np.float32, count=len(rows))
        c = confidence(weight, self.params.alpha)
        known = self.item_factors[rows]
        matrix = self._base + (known.T * (c - 1.0)) @ known
        return np.linalg.solve(matrix, known.T @ c).astype(np.float32)

    def stored_user_vector(self, user_id: str) -> np.ndarray | None:
        row = self.user_row.get(user_id)
        return None if row is None else self.user_factors[row]

    # --- evaluation ----------------------------------------------------------------------------

    def hit_rate(self, held_out: HeldOut, k: int = 10, max_users: int | None = None, seed: int = 0) -> float:
        """Share of held-out users whose held-out item is in the top k (their training items excluded)."""
        users, items = _sample(held_out, max_users, seed)
        train = held_out.train.matrix()
        hits = 0
        for start in range(0, len(users), 1024):
            chunk = users[start : start + 1024]
            scores = self.user_factors[chunk] @ self.item_factors.T
            hits += _hits(scores, train[chunk], items[start : start + 1024], k)
        return hits / max(len(users), 1)

    # --- artefact ------------------------------------------------------------------------------

    def write_files(self, directory: Path) -> None:
        write_npz(
            directory / ARTEFACT_FILE,
            item_factors=self.item_factors,
            user_factors=self.user_factors,
            item_ids=np.array(self.item_ids, dtype=str),
            user_ids=np.array(self.user_ids, dtype=str),
        )

    def save(self, store: ArtifactStore, meta: dict[str, Any], make_current: bool = True) -> ModelVersion:
        version = store.save(
            MODEL_KIND,
            self.write_files,
            {"hyper_parameters": asdict(self.params), "items": len(self.item_ids), "users": len(self.user_ids), **meta},
            make_current=make_current,
        )
        self.version, self.meta = version.version, version.meta
        return version

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None) -> AlsModel:
        return cls.from_version(store.get(MODEL_KIND, version) if version else store.current(MODEL_KIND))

    @classmethod
    def from_version(cls, found: ModelVersion) -> AlsModel:
        with np.load(found.path / ARTEFACT_FILE, allow_pickle=False) as files:
            arrays = {name: files[name] for name in files.files}
        return cls(
            arrays["item_ids"].tolist(),
            arrays["item_factors"],
            arrays["user_ids"].tolist(),
            arrays["user_factors"],
            AlsParams(**found.meta["hyper_parameters"]),
            found.version,
            found.meta,
        )


def confidence(weights: np.ndarray, alpha: float) -> np.ndarray:
    """Hu et al.'s c = 1 + alpha * r: an interacted cell always weighs more than a missing one
    (implicit takes the matrix's values as c directly, and a value below 1 would weigh less)."""
    return (1.0 + alpha * np.asarray(weights, dtype=np.float32)).astype(np.float32)


def popularity_hit_rate(held_out: HeldOut, k: int = 10, max_users: int | None = None, seed: int = 0) -> float:
    """The baseline: the k items with most training weight the user has not interacted with."""
    users, items = _sample(held_out, max_users, seed)
    train = held_out.train.matrix()
    popularity = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
    hits = 0
    for start in range(0, len(users), 1024):
        chunk = users[start : start + 1024]
        scores = np.broadcast_to(popularity, (len(chunk), popularity.size))
        hits += _hits(scores, train[chunk], items[start : start + 1024], k)
    return hits / max(len(users), 1)


def _sample(held_out: HeldOut, max_users: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if max_users is None or max_users >= len(held_out.users):
        return held_out.users, held_out.items
    chosen = np.sort(np.random.default_rng(seed).choice(len(held_out.users), size=max_users, replace=False))
    return held_out.users[chosen], held_out.items[chosen]


def _hits(scores: np.ndarray, seen: sp.csr_matrix, targets: np.ndarray, k: int) -> int:
    scores = np.array(scores, dtype=np.float32)
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    return int((top == targets[:, None]).any(axis=1).sum())


@dataclass
class Evaluation:
    hit_rate_at_10_als: float
    hit_rate_at_10_popularity: float
    held_out_users: int
    extra: dict[str, float] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        return {
            "hit_rate_at_10_als": round(self.hit_rate_at_10_als, 4),
            "hit_rate_at_10_popularity": round(self.hit_rate_at_10_popularity, 4),
            "held_out_users": float(self.held_out_users),
            **self.extra,
        }


def fit_and_evaluate(
    log: InteractionLog, params: AlsParams = AlsParams(), threads: int = 1, max_eval_users: int | None = None
) -> tuple[AlsModel, Evaluation]:
    """Hit-rate@10 of a model fitted without each user's last purchase, against popularity; then
    the model to serve, fitted on everything."""
    held_out = hold_out_last_purchase(log)
    evaluated = AlsModel.fit(held_out.train, params, threads)
    evaluation = Evaluation(
        evaluated.hit_rate(held_out, 10, max_eval_users, params.seed),
        popularity_hit_rate(held_out, 10, max_eval_users, params.seed),
        len(held_out.users) if max_eval_users is None else min(max_eval_users, len(held_out.users)),
    )
    return AlsModel.fit(log, params, threads), evaluation


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like `np.savez`, with fixed zip timestamps: the same arrays give the same bytes, so the model
    store's content-hash versions are stable across refits of the same data."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in sorted(arrays.items()):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


# --- a log replayed from elmo.feedback ----------------------------------------------------------

NO_PURCHASE = (0.0, -1, -1)
# Fewer held-out users than this and a refit's gate does not judge: a hit-rate over a handful of
# purchases is noise (see `services.recommender.commands.judge_refit`).
MIN_HELD_OUT_USERS = 20


@dataclass
class FeedbackCells:
    """Clicks and purchases folded into (user, item) cells: summed weight, the last purchase as
    (time, partition, offset), so equal times are ordered by the log, and the first interaction (which
    tells whether a version fitted on a range of the log saw the cell). Views are left out (see the
    module doc). Cells are order-free sums, minima and maxima: the same events give the same cells
    whichever order (or checkpoint) they come in."""

    weights: dict[tuple[str, str], float] = field(default_factory=dict)
    last_purchase: dict[tuple[str, str], tuple[float, int, int]] = field(default_factory=dict)
    first_seen: dict[tuple[str, str], tuple[float, int, int]] = field(default_factory=dict)

    def add(self, interaction: Interaction, partition: int, offset: int) -> bool:
        """Fold one interaction in; False for a view, which is not."""
        if interaction.kind is InteractionKind.VIEW:
            return False
        cell, key = (interaction.user_id, interaction.item_id), (interaction.at.timestamp(), partition, offset)
        self.weights[cell] = self.weights.get(cell, 0.0) + interaction.weight
        self.first_seen[cell] = min(self.first_seen.get(cell, key), key)
        if interaction.kind is InteractionKind.PURCHASE:
            self.last_purchase[cell] = max(self.last_purchase.get(cell, key), key)
        return True

    def __len__(self) -> int:
        return len(self.weights)

    def to_log(self, item_ids: Sequence[str]) -> InteractionLog:
        """Users sorted, one row per cell in (user, item) order; items outside `item_ids` dropped."""
        column = {item: position for position, item in enumerate(item_ids)}
        cells = sorted(cell for cell in self.weights if cell[1] in column)
        user_ids = sorted({user for user, _ in cells})
        row = {user: position for position, user in enumerate(user_ids)}
        # Rank of each purchase in log order (time, partition, offset): the hold-out's tiebreak.
        rank = {cell: position for position, cell in enumerate(sorted(self.last_purchase, key=self.last_purchase.__getitem__))}
        return InteractionLog(
            user_ids,
            list(item_ids),
            np.array([row[u] for u, _ in cells], dtype=np.int32),
            np.array([column[i] for _, i in cells], dtype=np.int32),
            np.array([self.weights[c] for c in cells], dtype=np.float32),
            np.array([self.last_purchase.get(c, NO_PURCHASE)[0] for c in cells], dtype=np.float64),
            np.array([c in self.last_purchase for c in cells], dtype=bool),
            np.array([rank.get(c, -1) for c in cells], dtype=np.int64),
        )

    def write(self, path: Path) -> None:
        cells = sorted(self.weights)
        purchase = [self.last_purchase.get(c, NO_PURCHASE) for c in cells]
        first = [self.first_seen[c] for c in cells]
        write_npz(
            path,
            users=np.array([u for u, _ in cells], dtype=str),
            items=np.array([i for _, i in cells], dtype=str),
            weights=np.array([self.weights[c] for c in cells], dtype=np.float64),
            purchase_times=np.array([p[0] for p in purchase], dtype=np.float64),
            purchase_partitions=np.array([p[1] for p in purchase], dtype=np.int64),
            purchase_offsets=np.array([p[2] for p in purchase], dtype=np.int64),
            first_times=np.array([f[0] for f in first], dtype=np.float64),
            first_partitions=np.array([f[1] for f in first], dtype=np.int64),
            first_offsets=np.array([f[2] for f in first], dtype=np.int64),
        )

    @classmethod
    def read(cls, path: Path) -> FeedbackCells:
        with np.load(path, allow_pickle=False) as files:
            a = {name: files[name] for name in files.files}
        cells = cls()
        for n, (user, item) in enumerate(zip(a["users"].tolist(), a["items"].tolist(), strict=True)):
            cells.weights[(user, item)] = float(a["weights"][n])
            cells.first_seen[(user, item)] = (float(a["first_times"][n]), int(a["first_partitions"][n]), int(a["first_offsets"][n]))
            if a["purchase_offsets"][n] >= 0:
                cells.last_purchase[(user, item)] = (float(a["purchase_times"][n]), int(a["purchase_partitions"][n]), int(a["purchase_offsets"][n]))
        return cells

    def purchases_unseen(self, log: InteractionLog, topic: str, seen: FeedbackSeen) -> np.ndarray:
        """Mask over the rows of `log` (`self.to_log(...)`): purchased cells new to a version fitted
        on what `seen` says, their first interaction (a record of `topic`) outside it. A cell it saw
        a click or an earlier purchase of is not new: that version would find it again from memory."""
        unseen = np.zeros(len(log), dtype=bool)
        for row in np.flatnonzero(log.purchases):
            user, item = log.user_ids[log.users[row]], log.item_ids[log.items[row]]
            at, partition, offset = self.first_seen[(user, item)]
            unseen[row] = not seen.covers(topic, user, at, partition, offset)
        return unseen


@dataclass(frozen=True)
class FeedbackSeen:
    """The feedback a stored version was fitted on, as far as its meta tells: a replay's range (topic,
    [start, end) offsets per partition, users prefix); for a fit on Redis (`--from redis`), every
    interaction up to when it was saved; for one on simulated shoppers (or unknown meta), none."""

    topic: str | None = None
    offsets: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    users_prefix: str | None = None
    until: float | None = None  # epoch seconds

    @classmethod
    def of(cls, meta: Mapping[str, Any] | None) -> FeedbackSeen:
        meta = meta or {}
        data = meta.get("training_data") or {}
        if "topic" in data and "offsets" in data:
            offsets = {int(p): (int(r[0]), int(r[1])) for p, r in data["offsets"].items()}
            return cls(data["topic"], offsets, data.get("users_prefix"))
        if (meta.get("trained_on") or {}).get("source") == "redis" and meta.get("created_at"):
            return cls(until=datetime.fromisoformat(meta["created_at"]).timestamp())
        return cls()

    def covers(self, topic: str, user: str, at: float, partition: int, offset: int) -> bool:
        if self.until is not None:
            return at <= self.until
        if topic != self.topic or (self.users_prefix is not None and not user.startswith(self.users_prefix)):
            return False
        start, end = self.offsets.get(partition, (0, 0))
        return start <= offset < end


@dataclass(frozen=True)
class HeldOutPurchases:
    """The gate's held-out set: for each user with 2+ purchased items, the last one (of the eligible
    ones) to predict from the rest of their clicks and purchases; `train` is the log without those
    cells. Any stored version is scored on it the way it serves (the user's factors solved from
    their interactions, `AlsModel.user_vector`), so a candidate and the current version are judged on
    the same users whatever users each was fitted on."""

    histories: tuple[dict[str, float], ...]
    targets: tuple[str, ...]
    train: InteractionLog | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, log: InteractionLog, eligible: np.ndarray | None = None) -> HeldOutPurchases:
        held = hold_out_last_purchase(log, eligible=eligible)
        train = held.train.matrix()
        histories = []
        for user in held.users:
            start, end = train.indptr[user], train.indptr[user + 1]
            histories.append({log.item_ids[i]: float(w) for i, w in zip(train.indices[start:end], train.data[start:end], strict=True)})
        return cls(tuple(histories), tuple(log.item_ids[i] for i in held.items), held.train)

    def __len__(self) -> int:
        return len(self.targets)

    def hit_rate(self, model: AlsModel, k: int = 10) -> float:
        hits = 0
        for weights, target in zip(self.histories, self.targets, strict=True):
            vector, row = model.user_vector(weights), model.item_row.get(target)
            if vector is None or row is None:
                continue
            scores = model.item_factors @ vector
            scores[[model.item_row[i] for i in weights if i in model.item_row]] = -np.inf
            hits += int(row in np.argpartition(-scores, kth=min(k, scores.size - 1))[:k])
        return hits / max(len(self), 1)

    def evaluator(self, k: int = 10, stand_ins: Mapping[str, AlsModel] | None = None, held_out: str | None = None) -> Evaluator:
        """A version named in `stand_ins` is scored by the model given for it instead of its own
        factors (a candidate by its twin fitted on `train`: see `commands.judge_refit`)."""
        stand_ins = stand_ins or {}

        def evaluate(found: ModelVersion) -> dict[str, float]:
            model = stand_ins.get(found.version) or AlsModel.from_version(found)
            return {f"hit_rate_at_{k}": self.hit_rate(model, k), "held_out_users": float(len(self))}

        return Evaluator(f"hit_rate_at_{k}", evaluate, held_out or f"last purchase of {len(self)} users of the replayed feedback log")
