"""Where to aggregate on a three-tier network: flat rounds against aggregators at the edge sites, at
the region, and at both, on scenarios/fleets/three-tier.yaml - simulated time and fleet energy to
the target accuracy, and the bytes each tier's links carried up to it (a tier's links are those
above its nodes: the edge tier's run from the edge sites to the region).

The fleet: 16 phones on two LTE cells behind an operator's edge site, 12 Raspberry Pi 5s on two
Wi-Fi access points behind a campus edge site, one metro region, the cloud (capacities: ESTIMATEs,
the scenario's header). DeComFL on the MiniLM head: a client's upload is a few seeds and scalars,
so an aggregator's partial is one upload's size and cuts the bytes above it by its fan-in; the
time hardly moves, since no link is near full.

    OMP_NUM_THREADS=1 python bench/topology.py

Prints its figures and writes bench/results/topology.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from edgefed.provenance import write_bench_result
from edgefed.results import read_rows
from edgefed.runner import run_scenario
from edgefed.scenario import load_scenario
from edgefed.simulator.topology import TIERS

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "fleets" / "three-tier.yaml"
RUNS = ROOT / "bench" / "runs" / "topology"
VARIANTS = {"flat": None, "at edge": ["edge"], "at region": ["region"], "at edge, region": ["edge", "region"]}


def figures(run_dir: Path) -> dict:
    """Time and energy to the target, and each tier's bytes (up + down) over the rounds up to it."""
    summary = json.loads((run_dir / "summary.json").read_text())
    reached = summary["rounds_to_target"]
    rows = [r for r in read_rows(run_dir / "rounds.csv") if reached is not None and int(r["round"]) <= reached]
    tiers = {f"{tier}_bytes_to_target": sum(int(r[f"{tier}_bytes_up"]) + int(r[f"{tier}_bytes_down"]) for r in rows)
             for tier in TIERS}
    return {"rounds_to_target": reached, "time_to_target_s": summary["time_to_target_s"],
            "energy_to_target_j": summary["energy_to_target_j"], **tiers,
            "sim_time_s": summary["totals"]["sim_time_s"], "final_accuracy": summary["final_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    results = {}
    for name, at in VARIANTS.items():
        overrides = ["rounds.aggregation.kind=flat", "rounds.aggregation.at=null"] if at is None else \
            [f"rounds.aggregation.at={json.dumps(at)}"]
        scenario, base = load_scenario(SCENARIO, overrides + ["output.report=false"])
        run_dir = RUNS / name.replace(", ", "-").replace(" ", "-")
        shutil.rmtree(run_dir, ignore_errors=True)
        run_scenario(scenario, base, run_dir)
        results[name] = figures(run_dir)
    out = {"scenario": str(SCENARIO.relative_to(ROOT)), "target_accuracy": scenario.rounds.target_accuracy,
           "variants": results}
    print(json.dumps(out, indent=2))
    write_bench_result(ROOT / "bench" / "results" / "topology.json", out, __file__)


if __name__ == "__main__":
    main()
