"""The device-mix sweep (scenarios/sweeps/device-mix.yaml, 4 fleets x 2 seeds, MiniLM head-only
on a tiny budget) run with 2 local workers; plots accuracy vs simulated time (mean and spread over
seeds) to docs/device_mix.png and time vs energy to target to docs/device_mix_pareto.png; figures
in bench/results/device_mix.json.

    OMP_NUM_THREADS=1 python bench/device_mix.py
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import edgefed.plots as plots  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.sweep import run_sweep  # noqa: E402

# seed 1 starts at 0.565 and peaks at 0.595 on this budget; seed 0 starts above 0.6
TARGET = 0.59


def main() -> None:
    out = ROOT / "bench/runs/device-mix"
    shutil.rmtree(out, ignore_errors=True)  # a sweep skips finished points: never reuse an older checkout's runs
    start = time.perf_counter()
    result = run_sweep(ROOT / "scenarios/sweeps/device-mix.yaml", out, workers=2)
    wall = time.perf_counter() - start
    groups = plots.collect([out])
    plots.plot_overlay(groups, "time", ROOT / "docs/device_mix.png", TARGET)
    plots.plot_pareto(groups, ROOT / "docs/device_mix_pareto.png", TARGET)
    figures = {"wall_s": wall, "points_run": len(result["ran"]), "target_accuracy": TARGET,
               "to_target": {k: (None if v is None else {"time_s": v[0], "energy_j": v[1]})
                             for k, v in plots.mean_to_target(groups, TARGET).items()}}
    for label, runs in groups.items():
        finals = [json.loads((r / "summary.json").read_text()) for r in runs]
        figures.setdefault("final", {})[label] = {
            "accuracy": sum(s["final_accuracy"] for s in finals) / len(finals),
            "sim_time_s": sum(s["totals"]["sim_time_s"] for s in finals) / len(finals),
            "energy_j": sum(s["totals"]["energy_j"] for s in finals) / len(finals)}
    write_bench_result(ROOT / "bench/results/device_mix.json", figures, __file__)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
