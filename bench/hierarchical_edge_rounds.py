"""HierFAVG's edge rounds: simulated time, backhaul bytes and accuracy against K, the edge rounds
per cloud round, on a fleet in three cells, for the same budget of edge rounds (so every K runs
the same number of client updates, and K = 1 is plain hierarchical FedAvg).

The fleet: 12 laptops behind a campus WiFi access point (100 Mbps backhaul), 8 flagship phones in
one 5G cell and 8 lab boards behind an ethernet switch (bench/hierarchical.py's; the backhaul
rates are illustrative, not measured). MiniLM-L6 with only its head trained by FedAvg + Adam on the
SST-2 slice, 14 of the 28 devices per cloud round: the frozen encoder's outputs are computed once
per example on the host, so the runs take a few minutes, and the devices are charged its full
forward passes. Each cell's edge runs its K edge rounds at its own pace and the backhaul carries
one model each way per cloud round instead of per edge round, but the cloud round waits for the
slowest cell's K edge rounds; accuracy is the mean over three seeds after 8, 16 and 24 edge rounds.

    OMP_NUM_THREADS=2 python bench/hierarchical_edge_rounds.py [--budget 24] [--ks 1 2 4 8] [--seeds 0 1 2]

Prints its table and writes bench/results/hierarchical_edge_rounds.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

from hierarchical import CELLS_FLEET  # the same three-cell fleet (this folder is on sys.path)

from edgefed.docgen import number, table
from edgefed.provenance import write_bench_result
from edgefed.results import read_rows
from edgefed.runner import run_scenario
from edgefed.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "hierarchical_edge_rounds"
ALGORITHM = {"name": "fedavg", "optimizer": "adam", "lr": 0.002, "local_steps": 5, "batch_size": 16,
             "trainable": "head"}
CLIENTS_PER_ROUND = 14


def scenario(k: int, cloud_rounds: int, seed: int, every: int) -> Scenario:
    data = {
        "name": f"edge-rounds-{k}-seed{seed}", "seed": seed,
        "model": {"name": "minilm-l6", "max_length": 48, "device": "cpu"},
        "task": {"dataset": {"train": str(ROOT / "scenarios/data/sst2/train.tsv"),
                             "test": str(ROOT / "scenarios/data/sst2/validation.tsv"), "test_limit": 436},
                 "head_init_examples": 4},
        "partition": {"kind": "dirichlet", "alpha": 0.5},
        "algorithm": ALGORITHM,
        "fleet": copy.deepcopy(CELLS_FLEET),
        "rounds": {"max": cloud_rounds, "clients_per_round": CLIENTS_PER_ROUND, "eval_every": every,
                   "aggregation": {"kind": "hierarchical", "edge_rounds": k}},
        "output": {"plots": False, "report": False},
    }
    return Scenario.model_validate(copy.deepcopy(data))


def figures(run_dir: Path, k: int) -> dict:
    """One run's totals, and its accuracy after each evaluated number of edge rounds."""
    totals = json.loads((run_dir / "summary.json").read_text())["totals"]
    rounds = read_rows(run_dir / "rounds.csv")
    return {"sim_time_s": totals["sim_time_s"],
            "backhaul_bytes": totals["backhaul_bytes_up"] + totals["backhaul_bytes_down"],
            "device_bytes": totals["bytes_up"] + totals["bytes_down"], "fleet_energy_j": totals["energy_j"],
            "updates_aggregated": totals["client_rounds"].get("ok", 0),
            "accuracy": {int(r["round"]) * k: float(r["accuracy"]) for r in rounds if r["accuracy"]}}


def mean(values):
    """The mean over the seeds (an integer where all are integers and it is whole)."""
    values = list(values)
    total = sum(values)
    return total // len(values) if all(isinstance(v, int) for v in values) and total % len(values) == 0 \
        else total / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=24, help="edge rounds in all, K x cloud rounds")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    every = max(args.ks)  # accuracy compared after every this many edge rounds
    if any(args.budget % every or every % k for k in args.ks):
        parser.error(f"--budget {args.budget} must be a multiple of the largest K, and it of every K")
    start, by_k = time.perf_counter(), {}
    for k in args.ks:
        runs = []
        for seed in args.seeds:
            run_dir = RUNS / f"k{k}-seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_scenario(scenario(k, args.budget // k, seed, every // k), ROOT, run_dir)
            runs.append(figures(run_dir, k))
        row = {"cloud_rounds": args.budget // k,
               **{key: mean(r[key] for r in runs) for key in runs[0] if key != "accuracy"}}
        for at in sorted(runs[0]["accuracy"]):
            row[f"accuracy_at_{at}"] = mean(r["accuracy"][at] for r in runs)
        by_k[f"K={k}"] = row
    out = {"method": "fedavg (adam, head only), minilm-l6", "fleet": "28 devices in 3 cells",
           "clients_per_round": CLIENTS_PER_ROUND, "edge_rounds_in_all": args.budget, "seeds": args.seeds,
           "figures": "means over the seeds; accuracy_at_N: after N edge rounds (N / K cloud rounds)",
           "by_k": by_k, "wall_s": time.perf_counter() - start}
    columns = list(next(iter(by_k.values())))
    print(table(["K", *columns], [[k, *(number(row[c]) for c in columns)] for k, row in by_k.items()]))
    write_bench_result(ROOT / "bench" / "results" / "hierarchical_edge_rounds.json", out, __file__)


if __name__ == "__main__":
    main()
