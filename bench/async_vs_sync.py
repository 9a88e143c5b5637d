"""Asynchronous (FedBuff) against synchronous rounds on the quickstart fleet and on the same fleet
with 20% stragglers: simulated time, fleet energy, bytes and client FLOPs to the quickstart's target
(0.65), for DeComFL, FedSPZO and FedAvg, paired by seed.

Every run is the quickstart (MiniLM-L6, head only, SST-2 slice, 20 devices: phones on LTE/5G,
Raspberry Pis on WiFi, Jetsons on Ethernet) with its method swapped in (FedSPZO: split 6, p2 8,
lr 0.008; FedAvg: Adam, lr 0.001; DeComFL: the quickstart's own), 5 local steps of 16 examples.
Synchronous rounds select 4 devices (60 rounds: 240 updates, twice the quickstart's 30 rounds so
that DeComFL has a chance at the target); asynchronous ones keep C = 8 sessions and fold every
K = 2 (120 versions) or K = 4 (60 versions) arrivals with FedBuff's staleness weight
1/sqrt(1+s) - the same 240 updates; on the quickstart fleet a third arm folds K = 4 with weight 1,
so that a version differs from a round only by the staleness of what it folds. The straggler
fleet slows a session's computation 4x with probability 0.2. Evaluations every 8 updates, so
to-target figures have the same resolution in every arm. A run that never reaches the target is reported as a bound (its
whole run: the figure to target is at least that); a paired ratio async / sync is then a bound
too. Energy to target is what the fleet spent by the target's time, the sessions still running
then counted up to that instant; ``in-flight J`` is their part of it (``energy_to_target_j`` less
``energy_to_target_completed_j``). ``accuracy per update`` compares the models after the same numbers of folded or
aggregated updates (sync round n and K = 4 version n both hold 4n; K = 2 version 2n): what
staleness costs per version. 63 runs, 3 seeds, about 3 minutes on 2 cores (the feature store
makes head-only runs cheap). ``folded share`` (asynchronous arms) is each device class's part of
the updates folded into versions, summed over seeds and methods, beside its part of the fleet
(issue 40 item 8: a device starts a new session as soon as its last one ends, whatever the
version; held to one session per version at main's a2ba065, the Jetsons, 20% of the fleet, folded
27.1% at C8 K2 and 27.0% at C8 K4 on the quickstart fleet).

    OMP_NUM_THREADS=1 python bench/async_vs_sync.py [--seeds 0,1,2] [--workers 2] [--report]
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from edgefed.provenance import code, write_bench_result  # noqa: E402
from edgefed.results import read_rows  # noqa: E402
from edgefed.scenario import read_scenario_file, validate_scenario  # noqa: E402

OUT = REPO / "bench" / "runs" / "async_vs_sync"
ROUNDS = 60  # synchronous rounds of 4: 240 updates
FLEETS = {"quickstart": {}, "stragglers": {"stragglers": {"probability": 0.2, "factor": 4.0}}}
METHODS = {
    "decomfl": None,  # the quickstart's own
    "fedspzo": {"name": "fedspzo", "split": 6, "p1": 1, "p2": 8, "lr": 0.008, "eps": 0.001, "local_steps": 5,
                "batch_size": 16, "distribution": "rademacher", "cache_z": True, "trainable": "head"},
    "fedavg": {"name": "fedavg", "optimizer": "adam", "lr": 0.001, "local_steps": 5, "batch_size": 16,
               "trainable": "head"},
}
ARMS = {
    "sync": {"max": ROUNDS, "eval_every": 2},
    "async C8 K2": {"mode": "async", "concurrency": 8, "buffer": 2, "max": 2 * ROUNDS, "eval_every": 4},
    "async C8 K4": {"mode": "async", "concurrency": 8, "buffer": 4, "max": ROUNDS, "eval_every": 2},
    # staleness weight 1 (quickstart fleet only): a version differs from a round only by its stale updates
    "async C8 K4 w=1": {"mode": "async", "concurrency": 8, "buffer": 4, "max": ROUNDS, "eval_every": 2,
                        "staleness": {"kind": "constant"}},
}
ONLY_ON = {"async C8 K4 w=1": "quickstart"}
FIGURES = ("time_to_target_s", "energy_to_target_j", "bytes_to_target", "client_flops_to_target")
TOTALS = {"time_to_target_s": "sim_time_s", "energy_to_target_j": "energy_j", "bytes_to_target": None,
          "client_flops_to_target": "client_flops"}
UPDATES = (64, 128, 192, 240)  # sync round / K = 4 version 16, 32, 48, 60; K = 2 version 32, 64, 96, 120


def run_dir(fleet: str, method: str, arm: str, seed: int) -> Path:
    return OUT / fleet / method / arm.replace(" ", "-") / f"seed{seed}"


def scenario(fleet: str, method: str, arm: str, seed: int):
    raw = read_scenario_file(REPO / "scenarios" / "quickstart.yaml")
    raw = copy.deepcopy(raw)
    raw["seed"] = seed
    if METHODS[method] is not None:
        raw["algorithm"] = METHODS[method]
    raw["fleet"].update(FLEETS[fleet])
    raw["rounds"].update(ARMS[arm])
    raw["output"] = {"plots": False, "report": False}
    return validate_scenario(raw, REPO / "scenarios")


def made_here(out: Path) -> bool:
    """Whether the run folder holds a run by this code: the same commit, neither side with uncommitted
    changes. A rerun after a stop keeps such a run (and continues it when unfinished); a folder from
    other code is made again, so the figures are this commit's."""
    try:
        made = json.loads((out / "provenance.json").read_text())["code"]
    except (OSError, ValueError, KeyError):
        return False
    here = code()
    return made["commit"] == here["commit"] and made["dirty"] is False and here["dirty"] is False


def play(point: tuple) -> str:
    import torch

    from edgefed.runner import run_scenario

    torch.set_num_threads(1)
    fleet, method, arm, seed = point
    out = run_dir(*point)
    if not made_here(out):
        shutil.rmtree(out, ignore_errors=True)
    if not (out / "summary.json").is_file() or json.loads((out / "summary.json").read_text())["status"] != "done":
        run_scenario(scenario(*point), REPO / "scenarios", out)
    return f"{fleet} {method} {arm} seed {seed}"


def reached(out: Path) -> dict:
    """The run's to-target figures, each a number or, not reached, ``>= whole run``; what the
    sessions in flight at the target had spent by then (async); accuracy after each number of updates."""
    summary = json.loads((out / "summary.json").read_text())
    totals = summary["totals"]
    figures = {}
    for key in FIGURES:
        if summary[key] is not None:
            figures[key] = summary[key]
        else:
            whole = totals["bytes_up"] + totals["bytes_down"] if key == "bytes_to_target" else totals[TOTALS[key]]
            figures[key] = {"at_least": whole}
    rounds = read_rows(out / "rounds.csv")
    figures["in_flight_j"] = None
    if summary["rounds_to_target"] is not None:
        figures["in_flight_j"] = summary["energy_to_target_j"] - summary["energy_to_target_completed_j"]
    folded, accuracy = 0, {}
    for r in rounds:
        folded += int(r["aggregated"])
        if r["accuracy"]:
            accuracy[folded] = float(r["accuracy"])
    figures["accuracy_at"] = {n: accuracy.get(n) for n in UPDATES}
    figures["final_accuracy"] = summary["final_accuracy"]
    stale = [float(r["staleness_mean"]) for r in rounds if r.get("staleness_mean")]
    figures["staleness_mean"] = statistics.fmean(stale) if stale else None
    folded_by = {}  # device -> updates folded into versions (a session row still "ok" was folded)
    for c in read_rows(out / "clients.csv"):
        if c["status"] == "ok" and int(c["round"]) > 0:
            folded_by[c["device"]] = folded_by.get(c["device"], 0) + 1
    figures["folded_by_device"] = folded_by
    return figures


def folded_share(per_run: list[dict]) -> dict:
    """Each device class's share of the folded updates over ``per_run``, beside its share of the fleet."""
    groups = read_scenario_file(REPO / "scenarios" / "quickstart.yaml")["fleet"]["groups"]
    fleet = {g["device"]: g["count"] for g in groups}
    counts = {d: sum(r["folded_by_device"].get(d, 0) for r in per_run) for d in fleet}
    total = sum(counts.values())
    return {d: {"folded": counts[d], "share": round(counts[d] / total, 4) if total else None,
                "fleet_share": round(n / sum(fleet.values()), 4)} for d, n in fleet.items()}


def shown(value) -> str | float:
    return f">= {value['at_least']:.4g}" if isinstance(value, dict) else value


def ratio(a, s):
    """async / sync for one seed: a number, or a bound where one side never reached the target."""
    if not isinstance(a, dict) and not isinstance(s, dict):
        return a / s
    if isinstance(a, dict) and not isinstance(s, dict):
        return f">= {a['at_least'] / s:.3g}"
    if not isinstance(a, dict):
        return f"<= {a / s['at_least']:.3g}"
    return "neither"


def report(seeds: list[int]) -> dict:
    table, ratios, staleness, shares = {}, {}, {}, {}
    for fleet in FLEETS:
        for method in METHODS:
            runs = {arm: [reached(run_dir(fleet, method, arm, s)) for s in seeds] for arm in ARMS
                    if ONLY_ON.get(arm, fleet) == fleet}
            for arm, per_seed in runs.items():
                row = {"reached": f"{sum(not isinstance(r['time_to_target_s'], dict) for r in per_seed)}/{len(seeds)}"}
                for key in FIGURES:
                    row[key.removesuffix("_to_target").removesuffix("_s").removesuffix("_j")] = \
                        [shown(r[key]) for r in per_seed]
                asynchronous = arm != "sync"
                row["in-flight J"] = [r["in_flight_j"] for r in per_seed] if asynchronous else "-"
                row["staleness"] = statistics.fmean(r["staleness_mean"] for r in per_seed) if asynchronous else 0
                row["final acc"] = [r["final_accuracy"] for r in per_seed]
                table[f"{fleet} / {method} / {arm}"] = row
                accs = [[r["accuracy_at"][n] for r in per_seed] for n in UPDATES]
                staleness[f"{fleet} / {method} / {arm}"] = {
                    f"after {n} updates": statistics.fmean(a) if None not in a else None for n, a in zip(UPDATES, accs)}
                if arm == "sync":
                    continue
                shares.setdefault(f"{fleet} / {arm}", []).extend(per_seed)
                entry = {}
                for key in FIGURES:
                    per = [ratio(a[key], s[key]) for a, s in zip(per_seed, runs["sync"])]
                    values = [p for p in per if isinstance(p, float)]
                    entry[key.removesuffix("_to_target").removesuffix("_s").removesuffix("_j")] = \
                        per + ([f"mean {statistics.fmean(values):.3g}"] if len(values) == len(per) else [])
                ratios[f"{fleet} / {method} / {arm} over sync"] = entry
    return {"setup": {"seeds": seeds, "target_accuracy": 0.65, "sync_rounds": ROUNDS, "updates": 4 * ROUNDS,
                      "clients_per_round": 4, "concurrency": 8, "buffers": [2, 4],
                      "staleness": "1/sqrt(1+s) (w=1: constant)", "straggler_fleet": "probability 0.2, factor 4"},
            "to_target": table, "ratios_async_over_sync": ratios, "accuracy_per_update": staleness,
            "folded_share": {k: folded_share(v) for k, v in shares.items()}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="only tabulate the run directories already there")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    points = [(f, m, a, s) for s in seeds for f in FLEETS for m in METHODS for a in ARMS if ONLY_ON.get(a, f) == f]
    if not args.report:
        with ProcessPoolExecutor(args.workers) as pool:
            for done in pool.map(play, points):
                print(done, flush=True)
    figures = report(seeds)
    for name, rows in (("to target", figures["to_target"]), ("async / sync", figures["ratios_async_over_sync"]),
                       ("accuracy per update", figures["accuracy_per_update"]),
                       ("folded share (methods and seeds together)", figures["folded_share"])):
        print(f"\n{name}")
        for key, row in rows.items():
            print(f"  {key}: {row}")
    path = REPO / "bench" / "results" / "async_vs_sync.json"
    write_bench_result(path, figures, __file__)
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
