"""What each change to the energy model moves: the quickstart and the device-mix sweep
(scenarios/sweeps/device-mix.yaml, 4 fleets x 2 seeds), run at the working tree and filed under a
stage label, so one file holds a before/after row per change (docs/benchmarks.md shows them in
order). Per run: time and fleet energy to the target, and the run's energy split into compute,
radio and idle (the device's baseline) from clients.csv. The learning never changes between
stages, so the accuracy columns must not move either.

    OMP_NUM_THREADS=1 python bench/energy_items.py STAGE    # e.g. before, throttle, session, ...
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import edgefed.plots as plots  # noqa: E402
from edgefed.provenance import bench_provenance, write_bench_result  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402
from edgefed.sweep import run_sweep  # noqa: E402

RESULT = ROOT / "bench/results/energy_items.json"
SPLIT = ("energy_compute_j", "energy_radio_j", "energy_idle_j")
DEVICE_MIX_TARGET = 0.59  # bench/device_mix.py's target


def energy_split(run_dir: Path) -> dict[str, float]:
    """The run's energy per phase, summed over clients.csv."""
    with (run_dir / "clients.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {name: sum(float(r[name] or 0.0) for r in rows) for name in SPLIT}


def quickstart(tmp: Path) -> dict:
    scenario, base = load_scenario(ROOT / "scenarios/quickstart.yaml", ["output.plots=false", "output.report=false"])
    run_dir = tmp / "quickstart"
    run_scenario(scenario, base, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"final_accuracy": summary["final_accuracy"], "time_to_target_s": summary["time_to_target_s"],
            "energy_to_target_j": summary["energy_to_target_j"], "sim_time_s": summary["totals"]["sim_time_s"],
            "energy_j": summary["totals"]["energy_j"], **energy_split(run_dir)}


def device_mix(tmp: Path) -> dict:
    out = tmp / "device-mix"
    run_sweep(ROOT / "scenarios/sweeps/device-mix.yaml", out, workers=2)
    groups = plots.collect([out])
    reached = plots.mean_to_target(groups, DEVICE_MIX_TARGET)
    figures = {}
    for label, runs in sorted(groups.items()):
        finals = [json.loads((r / "summary.json").read_text()) for r in runs]
        splits = [energy_split(r) for r in runs]
        figures[label] = {
            "time_to_target_s": None if reached[label] is None else reached[label][0],
            "energy_to_target_j": None if reached[label] is None else reached[label][1],
            "final_accuracy": sum(s["final_accuracy"] for s in finals) / len(finals),
            "energy_j": sum(s["totals"]["energy_j"] for s in finals) / len(finals),
            **{name: sum(s[name] for s in splits) / len(splits) for name in SPLIT}}
    return figures


def filed() -> dict[str, dict]:
    """The stages already in the result file, in their order."""
    if not RESULT.exists():
        return {}
    old = json.loads(RESULT.read_text())
    return {name: {"quickstart": row, "code": old["code"][name],
                   "device_mix": {key.rsplit(" @ ", 1)[0]: fleet for key, fleet in old["device_mix"].items()
                                  if key.rsplit(" @ ", 1)[1] == name}}
            for name, row in old["quickstart"].items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="the label this working tree's figures are filed under")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stage = {"quickstart": quickstart(Path(tmp)), "device_mix": device_mix(Path(tmp)),
                 "code": {k: v for k, v in bench_provenance(__file__).items() if k in ("commit", "dirty")}}
    stages = {**filed(), args.stage: stage}
    fleets = sorted({fleet for s in stages.values() for fleet in s["device_mix"]})
    tables = {  # one row per stage, in the order the stages were filed
        "quickstart": {name: s["quickstart"] for name, s in stages.items()},
        "device_mix": {f"{fleet} @ {name}": s["device_mix"][fleet] for fleet in fleets for name, s in stages.items()
                       if fleet in s["device_mix"]},
        "code": {name: s["code"] for name, s in stages.items()}}
    write_bench_result(RESULT, {"device_mix_target": DEVICE_MIX_TARGET, **tables}, __file__)
    print(json.dumps(stage, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
