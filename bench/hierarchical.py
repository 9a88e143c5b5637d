"""Flat against hierarchical (edge-server) aggregation on one fleet in three cells: simulated time,
backhaul bytes and device bytes per method, and how far the learning moved apart.

The fleet: 12 laptops behind a campus WiFi access point (100 Mbps backhaul), 8 flagship phones in
one 5G cell and 8 lab boards behind an ethernet switch; the cells' backhaul rates are illustrative,
not measured. Tiny random BERT on the SST-2 slice, so the learning is quick; FedZO sends the full
trainable weights (4 MB each way), DeComFL a few seeds and scalars. Under flat aggregation every
client's transfer crosses its cell's backhaul, so the backhaul carries the devices' bytes.

    OMP_NUM_THREADS=1 python bench/hierarchical.py [--rounds 3]

Prints its figures and writes bench/results/hierarchical.json.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import shutil
from pathlib import Path

from edgefed.provenance import write_bench_result
from edgefed.runner import run_scenario
from edgefed.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "hierarchical"
METHODS = {
    "fedzo": {"name": "fedzo", "lr": 1e-3, "eps": 1e-3, "local_steps": 2, "batch_size": 8, "perturbations": 2,
              "trainable": "all"},
    "decomfl": {"name": "decomfl", "lr": 1e-3, "eps": 1e-3, "local_steps": 2, "batch_size": 8,
                "perturbations": 2, "trainable": "all"},
}


# 28 devices in three cells (a campus access point, a 5G cell, a lab switch), each behind its own
# backhaul: the fleet both hierarchical benches play
CELLS_FLEET = {
    "groups": [{"device": "macbook-air-m2", "count": 6, "link": "wifi", "cell": "campus-ap"},
               {"device": "framework13-amd", "count": 6, "link": "wifi", "cell": "campus-ap"},
               {"device": "galaxy-s24", "count": 8, "link": "5g", "cell": "5g-cell"},
               {"device": "jetson-orin-nano", "count": 4, "link": "ethernet", "cell": "lab-switch"},
               {"device": "rpi5", "count": 4, "link": "ethernet", "cell": "lab-switch"}],
    "network": {"cells": {"campus-ap": {"up_mbps": 100, "down_mbps": 100, "latency_s": 0.005},
                          "5g-cell": {"up_mbps": 200, "down_mbps": 1000, "latency_s": 0.01},
                          "lab-switch": {"up_mbps": 1000, "down_mbps": 1000, "latency_s": 0.001}}}}


def scenario(method: str, kind: str, rounds: int) -> Scenario:
    data = {
        "name": f"{method}-{kind}", "seed": 1,
        "model": {"name": "tiny-bert", "max_length": 32, "device": "cpu"},
        "task": {"dataset": {"train": str(ROOT / "scenarios/data/sst2/train.tsv"),
                             "test": str(ROOT / "scenarios/data/sst2/validation.tsv"),
                             "train_limit": 480, "test_limit": 128}, "head_init_examples": 4},
        "partition": {"kind": "dirichlet", "alpha": 0.5},
        "algorithm": METHODS[method],
        "fleet": copy.deepcopy(CELLS_FLEET),
        "rounds": {"max": rounds, "clients_per_round": 14, "eval_every": rounds,
                   "aggregation": {"kind": kind}},
        "output": {"plots": False, "report": False},
    }
    return Scenario.model_validate(copy.deepcopy(data))


def figures(run_dir: Path, kind: str) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    totals = summary["totals"]
    device_bytes = totals["bytes_up"] + totals["bytes_down"]
    backhaul = (totals["backhaul_bytes_up"] + totals["backhaul_bytes_down"]) if kind == "hierarchical" \
        else device_bytes  # every device sits in a cell: each of its transfers crosses the backhaul
    with (run_dir / "rounds.csv").open() as fh:
        last = list(csv.DictReader(fh))[-1]
    return {"sim_time_s": totals["sim_time_s"], "backhaul_bytes": backhaul, "device_bytes": device_bytes,
            "fleet_energy_j": totals["energy_j"], "final_accuracy": summary["final_accuracy"],
            "final_loss": float(last["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for method in METHODS:
        row = {}
        for kind in ("flat", "hierarchical"):
            run_dir = RUNS / f"{method}-{kind}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_scenario(scenario(method, kind, args.rounds), ROOT, run_dir)
            row[kind] = figures(run_dir, kind)
        row["backhaul_saving"] = 1 - row["hierarchical"]["backhaul_bytes"] / row["flat"]["backhaul_bytes"]
        row["final_loss_difference"] = abs(row["hierarchical"]["final_loss"] - row["flat"]["final_loss"])
        results[method] = row
    figures_out = {"rounds": args.rounds, "clients_per_round": 14, "fleet": "28 devices in 3 cells",
                   "methods": results}
    print(json.dumps(figures_out, indent=2))
    write_bench_result(ROOT / "bench" / "results" / "hierarchical.json", figures_out, __file__)


if __name__ == "__main__":
    main()
