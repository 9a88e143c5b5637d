"""The FedSPZO v3 picks' simulated time, energy and bytes on the quickstart's fleet, on the current
simulator (issue 38). The study's runs learned at its pinned commit, whose device model later
issues changed; each pick's report run is replayed here from its gzipped trace (same scenario,
same budget B, the model left out), so the systems figures are today's while the learning stays
the pinned one. Each figure is read at the budget itself: a run stops after the round that
crosses B, so its last round is counted pro rata (linear within that round), and every pick is
read at the same client FLOPs. Per arm: the paired difference from the reference, seed by seed, with its 95%
t-interval (``edgefed.protocol.paired``) and one generated sentence per figure. Run it last, on
the final code, after `edgefed compare bench/fedspzo_v3.yaml` has written compare.json.

    OMP_NUM_THREADS=1 python bench/fedspzo_v3_replays.py
"""
from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from edgefed.budget import spend
from edgefed.comparison import load_comparison
from edgefed.protocol import format_cost, paired
from edgefed.provenance import write_bench_result
from edgefed.results import read_rows
from edgefed.runner import run_scenario
from edgefed.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "bench" / "fedspzo_v3.yaml"
RUNS = REPO / "bench" / "results" / "fedspzo_v3"
RESULT = REPO / "bench" / "results" / "fedspzo_v3_replays.json"
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
FIGURES = {"sim_time_s": "simulated time", "energy_j": "fleet energy", "bytes": "bytes on the network"}


def at_budget(run_dir: Path, cost: str, budget: float) -> dict:
    """Simulated time, energy and bytes when the run's cumulative ``cost`` reached ``budget``: the
    round that crossed it counted for the part of it that was within the budget."""
    totals = {"sim_time_s": 0.0, "energy_j": 0.0, "bytes": 0.0}
    spent = 0.0
    for row in read_rows(run_dir / "rounds.csv"):
        after = {figure: spend(value, row, figure) for figure, value in totals.items()}
        cost_after = spend(spent, row, cost)
        if cost_after >= budget:
            part = (budget - spent) / (cost_after - spent)
            return {figure: totals[figure] + part * (after[figure] - totals[figure]) for figure in totals}
        totals, spent = after, cost_after
    raise SystemExit(f"{run_dir}: ended at {format_cost(spent, cost)}, before the budget")


def replay(run_dir: Path, work: Path, cost: str, budget: float, fleet) -> dict:
    """One report run replayed on the current simulator (its fleet must be ``fleet``, the
    quickstart's): its figures at the budget."""
    trace = work / "trace.jsonl"
    with gzip.open(run_dir / "trace.jsonl.gz", "rt") as packed:
        text = packed.read()
    trace.write_text(text)
    rounds = sum(1 for line in text.splitlines()[1:] if json.loads(line)["round"] > 0)
    scenario, base = load_scenario(run_dir / "scenario.yaml", [
        f"replay={{trace: {trace}}}", "task.evaluate_on=test",  # a trace holds the test accuracy only
        f"rounds.max={rounds}", "output.report=false", "output.plots=false"])
    if scenario.fleet != fleet:
        raise SystemExit(f"{run_dir}: its fleet is not the quickstart's")
    run_scenario(scenario, base, work / "run")
    return at_budget(work / "run", cost, budget)


def difference_sentence(label: str, reference: str, figure: str, p, budget: str) -> str:
    """One figure's paired difference as a sentence: mean, interval, seeds, and which way it points."""
    fmt = lambda v: f"{'+' if v > 0 else ''}{format_cost(v, figure)}"  # noqa: E731
    spread = (f"95% t-interval {fmt(p.low)} to {fmt(p.high)} over {p.n} seeds" if p.low is not None
              else f"no interval over {p.n} seed{'s' if p.n != 1 else ''}")
    verdict = {"higher": f"{label} spends more", "lower": f"{label} spends less"}.get(p.verdict, p.verdict)
    return (f"Over {budget} on the quickstart's fleet, {label} minus {reference}: {fmt(p.mean)} of "
            f"{FIGURES[figure]} ({spread}): {verdict}.")


def main() -> int:
    comparison = load_comparison(PLAN)
    result = json.loads((RUNS / "compare.json").read_text())
    seeds = result["seeds"]["registered"] + result["seeds"]["added"]
    reference, budget = result["reference"], format_cost(result["budget"], result["cost"])
    fleet, picks = load_scenario(QUICKSTART)[0].fleet, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pick in result["picks"].items():
            per_seed = {}
            for seed in seeds:
                run_dir = RUNS / comparison.run(label, pick["config"], seed).folder
                work = Path(tmp) / label / str(seed)
                work.mkdir(parents=True)
                per_seed[seed] = replay(run_dir, work, result["cost"], result["budget"], fleet)
                print(f"{label} seed {seed}: " + ", ".join(f"{k} {v:.6g}" for k, v in per_seed[seed].items()),
                      flush=True)
            picks[label] = {"config": pick["config"], "seeds": seeds,
                            **{k: [per_seed[s][k] for s in seeds] for k in FIGURES}}
    differences = {}
    for label, figures in picks.items():
        if label == reference:
            continue
        differences[label] = {}
        for figure in FIGURES:
            p = paired(dict(zip(seeds, picks[reference][figure])), dict(zip(seeds, figures[figure])))
            differences[label][figure] = {"mean": p.mean, "low": p.low, "high": p.high, "verdict": p.verdict,
                                          "sentence": difference_sentence(label, reference, figure, p, budget)}
            print(differences[label][figure]["sentence"])
    write_bench_result(RESULT, {"reference": reference, "budget": result["budget"], "cost": result["cost"],
                                "fleet": str(QUICKSTART.relative_to(REPO)), "picks": picks,
                                "differences": differences}, __file__)
    print(f"figures: {RESULT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
