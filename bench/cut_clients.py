"""Cut clients (issue 40, item 1): what over-selection and a round deadline cost once a client cut
while computing no longer stops at once for free. The quickstart fleet (6 pixel-7a on LTE, 4
galaxy-s24 on 5G, 6 rpi5 on Wi-Fi, 4 Jetsons on Ethernet) replays one recorded quickstart run with
25 local steps a round (MiniLM-L6, DeComFL, 4 clients a round, 30 rounds; a rpi5 computes 5.4 s of
a round, a pixel-7a 2.6 s, a Jetson 0.6 s), so every arm learns alike and differs in its systems
alone, over 5 seeds: with `rounds.selection: overselect` (6 picked, the first 4 kept) and with
`rounds.deadline_s: 4`. Per arm, means over the seeds: the run's energy, the energy of the clients
the server did not take (status late or cut; and how many rows), time and energy to 0.72 accuracy.

Arms: `before`, the code at the commit the figures name (cut clients stopped at the close, charged
what they had done; measured there with `--measure-before`, run from a checkout of that commit with
this script copied in, and kept in the results JSON), `finish` (the default: a cut client computes
on, and its upload is refused at its first contact) and `push` (a push stops it at the close). The
two after arms also carry issue 40 item 5's connection rule; `before` does not.

    OMP_NUM_THREADS=1 python bench/cut_clients.py [--before FILE]
    python bench/cut_clients.py --measure-before FILE   # in a checkout of the base commit

Prints its figures and writes bench/results/cut_clients.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

from edgefed.provenance import code, write_bench_result  # noqa: E402
from edgefed.results import atomic_write  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import validate_scenario  # noqa: E402

RUNS = ROOT / "bench/runs/cut_clients"
RESULTS = ROOT / "bench/results/cut_clients.json"
SEEDS = range(5)
SCENARIOS = {"overselect": {"selection": "overselect"}, "deadline 4 s": {"deadline_s": 4.0}}
LOCAL_STEPS = 25
TARGET = 0.72  # 25 local steps reach the quickstart's 0.65 in a round or two
CUT_ARMS = ("finish", "push")


def quickstart(name: str, seed: int = 0) -> dict:
    data = yaml.safe_load((ROOT / "scenarios/quickstart.yaml").read_text())
    data.update(name=name, seed=seed)
    data["algorithm"]["local_steps"] = LOCAL_STEPS
    data["rounds"].update(eval_every=1, target_accuracy=TARGET)  # time to target to the round
    data["output"].update(plots=False, report=False)
    return data


def record() -> Path:
    """The real quickstart run (seed 0): the learning every arm replays."""
    run_dir = RUNS / "recorded"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_scenario(validate_scenario(quickstart("recorded"), ROOT / "scenarios"), ROOT / "scenarios", run_dir)
    return run_dir / "trace.jsonl"


def replay(trace: Path, name: str, seed: int, rounds: dict) -> tuple[dict, list[dict]]:
    data = quickstart(name, seed)
    data["replay"] = {"trace": str(trace)}
    data["rounds"].update(rounds)
    run_dir = RUNS / name
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = run_scenario(validate_scenario(data, ROOT / "scenarios"), ROOT / "scenarios", run_dir)
    with (run_dir / "clients.csv").open() as fh:
        return summary, list(csv.DictReader(fh))


def arm(trace: Path, label: str, rounds: dict) -> dict:
    """Means over the seeds of one scenario under one arm."""
    runs = []
    for seed in SEEDS:
        summary, rows = replay(trace, f"{label}-seed{seed}", seed, rounds)
        not_taken = [r for r in rows if r["status"] in ("late", "cut")]
        runs.append({"energy_j": summary["totals"]["energy_j"],
                     "not_taken_energy_j": sum(float(r["energy_compute_j"]) + float(r["energy_radio_j"])
                                               + float(r["energy_idle_j"]) for r in not_taken),
                     "not_taken_rows": len(not_taken),
                     "time_to_target_s": summary["time_to_target_s"],
                     "energy_to_target_j": summary["energy_to_target_j"],
                     "sim_time_s": summary["totals"]["sim_time_s"]})
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.mean(values)) if len(values) == len(runs) else None
    return out


def measure(trace: Path, arms: dict[str, dict]) -> dict:
    return {scenario: {name: arm(trace, f"{slug(scenario)}-{name}", {**rounds, **extra})
                       for name, extra in arms.items()}
            for scenario, rounds in SCENARIOS.items()}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure-before", type=Path, help="measure the code as it is as the before arm, "
                        "into this file (run in a checkout of the base commit)")
    parser.add_argument("--before", type=Path, help="a --measure-before file to keep as the before arm "
                        "(default: the one bench/results/cut_clients.json holds)")
    args = parser.parse_args()
    start = time.perf_counter()
    trace = record()
    if args.measure_before:
        before = {"commit": code(ROOT)["commit"], "scenarios": measure(trace, {"before": {}})}
        atomic_write(args.measure_before, json.dumps(before, indent=2) + "\n")
        print(f"wrote {args.measure_before}")
        return
    saved = json.loads((args.before or RESULTS).read_text())  # a --measure-before file, or the last results
    figures = measure(trace, {name: {"cut": name} for name in CUT_ARMS})
    for scenario, arms in figures.items():
        figures[scenario] = {"before": saved["scenarios"][scenario]["before"], **arms}
        for name, f in figures[scenario].items():
            print(f"{scenario:14s} {name:7s} energy {f['energy_j']:8.1f} J, not taken {f['not_taken_energy_j']:7.1f} J "
                  f"({f['not_taken_rows']:.1f} rows), time to target {show(f['time_to_target_s'])} s, "
                  f"energy to target {show(f['energy_to_target_j'])} J", flush=True)
    results = {"seeds": len(SEEDS), "fleet": "quickstart (20 devices), replaying one recorded quickstart run",
               "before_commit": saved.get("commit") or saved["before_commit"], "scenarios": figures,
               "wall_s": time.perf_counter() - start}
    write_bench_result(RESULTS, results, __file__)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def show(value) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
