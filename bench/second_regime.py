"""What a second FedSPZO study closer to the paper's LLMs would cost on this machine (issue 38): the
v3 study's shape (bench/fedspzo_v3.yaml: its arms' picks, stages, evaluations per budget and
tuning split) with SmolLM2-135M and its label-word task (scenarios/paper/smollm2-sst2-decomfl.yaml)
in place of MiniLM-L6, measured the same way for both models.

Each of v3's picks (FedSPZO split at half the layers with p2 4, DeComFL P 1, FedAvg with Adam) runs
two rounds in v3's regime on one thread, as one study worker per core does. Round 0 is an evaluation
alone; the second round trains and evaluates again, so its host seconds less round 0's are a round's
training once warm (the first round, which pays the warm-up, is recorded beside it). The evaluation
reads a subset of the test and tuning splits and is scaled per sentence to the study's (872 + 500).
A study's host time is then, arm by arm, its budgets (``comparison.stage_cost``: pruning n/3,
survivors 8/3 each, report 5) x (the rounds one budget takes x a round + the evaluations one budget
takes x an evaluation). The SmolLM2 study keeps v3's rounds per run, so its budget is v3's B scaled
by the rounds' FLOPs; the control arm, DeComFL on block 2, is costed at DeComFL's rates. The same
estimate for MiniLM is set against v3's own host seconds (its run folders' rounds.csv), the check on
the method.

    OMP_NUM_THREADS=1 python bench/second_regime.py
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from edgefed.comparison import load_comparison, stage_cost
from edgefed.provenance import write_bench_result
from edgefed.results import read_rows

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "bench" / "fedspzo_v3.yaml"
V3 = REPO / "bench" / "results" / "fedspzo_v3"
SMOLLM = REPO / "scenarios" / "paper" / "smollm2-sst2-decomfl.yaml"
RESULT = REPO / "bench" / "results" / "second_regime.json"
TIMED = {"fedspzo": "fedspzo", "decomfl": "decomfl", "decomfl-block2": "decomfl", "fedavg": "fedavg"}
SUBSET = {"task.dataset.test_limit": 100, "task.tuning_split": 100}
STUDY_SENTENCES = 872 + 500  # SST-2's validation split and v3's tuning split


def base_and_layers(comparison, model: str) -> tuple[Path, int]:
    """The scenario a model's runs start from and its layer count (FedSPZO's split goes at half of
    it, as v3's split 3 of MiniLM's 6)."""
    return (comparison.base, 6) if model == "minilm-l6" else (SMOLLM, 30)


def timed(comparison, model: str, arm: str, config: int, work: Path) -> dict:
    """One pick's training round and evaluation, from two rounds of host seconds on one thread."""
    import edgefed

    base, layers = base_and_layers(comparison, model)
    overrides = {k: v for k, v in comparison.run(arm, config, 0).overrides.items() if k != "rounds.budget"}
    algorithm = dict(overrides["algorithm"])
    if algorithm["name"] == "fedspzo":
        algorithm["split"] = layers // 2
    overrides.update({**SUBSET, "algorithm": algorithm, "rounds.max": 2, "rounds.eval_every": 2})
    out = work / f"{model}-{arm}"
    edgefed.run(base, overrides=overrides, out=out)
    rows = read_rows(out / "rounds.csv")
    scale = STUDY_SENTENCES / (SUBSET["task.dataset.test_limit"] + SUBSET["task.tuning_split"])
    return {"round_tflop": float(rows[1]["client_flops"]) / 1e12, "round_s": float(rows[2]["host_seconds"])
            - float(rows[0]["host_seconds"]), "evaluation_s": float(rows[0]["host_seconds"]) * scale,
            "first_round_s": float(rows[1]["host_seconds"]), "split": algorithm.get("split")}


def study_hours(rates: dict, budget_tflop: dict, evaluations: int, budgets: dict) -> float:
    """A study's host hours from each arm's rates (``timed``), budget and share of the plan's budgets."""
    seconds = 0.0
    for arm, n in budgets.items():
        r = rates[TIMED[arm]]
        seconds += n * (budget_tflop[arm] / r["round_tflop"] * r["round_s"] + evaluations * r["evaluation_s"])
    return seconds / 3600


def v3_host_hours() -> float:
    """The host hours v3's runs took, summed over every committed round (two runs at a time on 2 cores)."""
    return sum(float(row["host_seconds"]) for run in (V3 / "runs").glob("*/*")
               for row in read_rows(run / "rounds.csv")) / 3600


def main() -> None:
    torch.set_num_threads(1)
    comparison = load_comparison(PLAN)
    spec, cost = comparison.spec, stage_cost(comparison)
    budgets = cost["arm_budgets"]
    picks = {arm: p["config"] for arm, p in json.loads((V3 / "compare.json").read_text())["picks"].items()}
    rates = {}
    with tempfile.TemporaryDirectory() as work:
        for model in ("minilm-l6", "smollm2-135m"):
            rates[model] = {arm: timed(comparison, model, arm, picks[arm], Path(work))
                            for arm in sorted(set(TIMED.values()))}
            for arm, r in rates[model].items():
                print(f"{model} {arm}: {r['round_tflop']:.3f} TFLOP a round in {r['round_s']:.1f} s, "
                      f"an evaluation of {STUDY_SENTENCES} sentences {r['evaluation_s']:.1f} s")
    b = spec.budget / 1e12
    budget_tflop = {"minilm-l6": {arm: b for arm in spec.arms},
                    "smollm2-135m": {arm: b * rates["smollm2-135m"][TIMED[arm]]["round_tflop"]
                                     / rates["minilm-l6"][TIMED[arm]]["round_tflop"] for arm in spec.arms}}
    hours = {model: study_hours(rates[model], budget_tflop[model], spec.evaluations, budgets) for model in rates}
    actual = v3_host_hours()
    print(f"v3 (MiniLM): estimated {hours['minilm-l6']:.1f} host hours, its runs took {actual:.1f}")
    print(f"SmolLM2: estimated {hours['smollm2-135m']:.1f} host hours, {hours['smollm2-135m'] / 2:.1f} wall hours "
          f"with two workers on 2 cores; budgets per run {budget_tflop['smollm2-135m']} client TFLOP")
    write_bench_result(RESULT, {"rates": rates, "budgets_by_arm": budgets, "budget_tflop": budget_tflop,
                                "evaluations_per_budget": spec.evaluations, "study_sentences": STUDY_SENTENCES,
                                "host_hours": hours, "v3_actual_host_hours": actual}, __file__)


if __name__ == "__main__":
    main()
