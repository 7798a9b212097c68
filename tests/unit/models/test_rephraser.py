"""Fine-tuning the generator's rephrasing model on well-rated replies, and the gate that judges it.

Needs the `rephrase` extra (`make test` installs it): without it loading the model fails, and so do
these tests. SmolLM2 is loaded once for the module; every version is judged on that one model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from elmo.models.artifacts import ArtifactStore, Status
from elmo.models.registry import ModelRegistry
from elmo.models.rephraser import (
    MODEL_KIND,
    PRIMARY_METRIC,
    FineTuneConfig,
    RephraserJudge,
    RephraserModel,
    TuningOutcome,
    read_pairs,
    split_pairs,
    tune_and_gate,
    well_rated_reply_ids,
)
from services.generator.grounding import check_rephrasing
from services.generator.policy import Brand
from services.generator.rephrase import judge, refused_beyond
from services.generator.service import load_brand

FIXTURES = Path(__file__).parent / "fixtures"
# Load, two fine-tunes and three judgements of 6 greedy decodings: ~4 min on 2 cores others share.
pytestmark = pytest.mark.timeout(900)
GOOD = FineTuneConfig(steps=10, learning_rate=1e-4, tuned_blocks=4, seed=13)
# Deliberately corrupted: pairs whose "rephrasing" changes prices, names and adds offers, learnt hard.
CORRUPTING = FineTuneConfig(steps=12, learning_rate=3e-4, tuned_blocks=4, seed=13)


@pytest.fixture(scope="module")
def brand() -> Brand:
    return load_brand()


@pytest.fixture(scope="module")
def base() -> RephraserModel:
    return RephraserModel.packaged()


@pytest.fixture(scope="module")
def gate(base: RephraserModel, brand: Brand) -> RephraserJudge:
    _, held_out = split_pairs(read_pairs(FIXTURES / "rephraser_well_rated.jsonl"))
    return judge(base, brand, held_out)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return ModelRegistry(ArtifactStore(tmp_path_factory.mktemp("store")), tolerance=0.01)


@pytest.fixture(scope="module")
def tuned(registry: ModelRegistry, gate: RephraserJudge) -> TuningOutcome:
    train, held_out = split_pairs(read_pairs(FIXTURES / "rephraser_well_rated.jsonl"))
    return tune_and_gate(registry, gate, train, GOOD, {"source": "fixture"})


def test_only_replies_rated_up_and_never_down_are_learnt_from():
    ratings = [("a", 1), ("b", 1), ("b", -1), ("c", -1), ("a", 1), ("d", 1)]
    assert well_rated_reply_ids(ratings) == ["a", "d"]


def test_a_few_steps_on_well_rated_replies_pass_the_gate_and_stay_grounded(
    tuned: TuningOutcome, registry: ModelRegistry, gate: RephraserJudge, base: RephraserModel, brand: Brand
):
    decision = tuned.decision
    assert decision is not None and decision.promoted, decision
    base_version = decision.previous_version
    assert base_version is not None  # the packaged model was registered first, as the baseline
    assert decision.candidate_metrics[PRIMARY_METRIC] >= decision.current_metrics[PRIMARY_METRIC]
    assert decision.candidate_metrics["held_out_pair_perplexity"] < decision.current_metrics["held_out_pair_perplexity"]
    record = registry.record(MODEL_KIND)
    assert record.version == tuned.version and record.status is Status.PROMOTED and record.parent_version == base_version
    assert record.training_data["pairs"] == 16 and "r01" in record.training_data["reply_event_ids"]
    assert record.metrics["steps"] == GOOD.steps and record.evaluation["baseline"]["version"] == base_version

    # The version as the generator loads it (base + tuned blocks) writes what the gate saw, and it is grounded.
    served = RephraserModel.load(registry.store.current(MODEL_KIND), tokenizer=base.tokenizer)
    product_names = [item.name for item in brand.catalog.items]
    case = gate.cases[2]  # "The Pixel 9 costs €799. ..."
    text = served.rephrase(case.template, gate.max_new_tokens, refused_beyond(case.template))
    assert text == gate.outputs[tuned.version][2]
    accepted = [t for t, c in zip(gate.outputs[tuned.version], gate.cases, strict=True) if t and check_rephrasing(
        t, c.template, c.context, product_names, brand.profile.banned_phrases).ok]  # fmt: skip
    assert len(accepted) == decision.candidate_metrics["held_out_accepted"] >= 3


def test_a_candidate_trained_on_falsified_rephrasings_is_rejected(tuned: TuningOutcome, registry: ModelRegistry, gate: RephraserJudge):
    corrupted = read_pairs(FIXTURES / "rephraser_corrupted.jsonl")
    outcome = tune_and_gate(registry, gate, corrupted, CORRUPTING, {"source": "corrupted fixture"})
    assert outcome.decision is not None and not outcome.decision.promoted, outcome.decision
    assert outcome.decision.candidate_metrics[PRIMARY_METRIC] < outcome.decision.current_metrics[PRIMARY_METRIC] - 0.01
    assert registry.store.current_version(MODEL_KIND) == tuned.version
    assert registry.record(MODEL_KIND, outcome.version).status is Status.REJECTED
