"""The same algorithm on three fleets from scenarios/fleets: time-to-accuracy and
energy-to-accuracy side by side, saved to docs/fleets.png (figures in bench/results/fleets.json).

Tiny budgets so the whole figure costs a few CPU-minutes: head-only DeComFL, 15 rounds, evaluation
every 5 rounds on 300 SST-2 validation sentences.

    OMP_NUM_THREADS=1 python bench/fleets.py [--replot]
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402

FLEETS = ["phones-lte", "rpi-wifi", "campus-mixed"]
BUDGET = ["rounds.max=15", "rounds.eval_every=5", "task.dataset.test_limit=300", "output.plots=false",
          "output.report=false"]


def main() -> None:
    figures = {}
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in FLEETS:
        scenario, base = load_scenario(ROOT / "scenarios/fleets" / f"{name}.yaml", BUDGET)
        run_dir = ROOT / "bench/runs/fleets" / name
        if "--replot" in sys.argv:  # redraw from the run directories already there
            summary = json.loads((run_dir / "summary.json").read_text())
        else:
            summary = run_scenario(scenario, base, run_dir)
        with (run_dir / "rounds.csv").open() as fh:
            rounds = list(csv.DictReader(fh))
        energy, points = 0.0, []
        for r in rounds:
            energy += float(r["energy_j"])
            if r["accuracy"]:
                points.append((float(r["sim_time_s"]), energy, float(r["accuracy"])))
        t, e, acc = zip(*points)
        ax_t.plot([x / 60 for x in t], acc, marker="o", label=name)
        ax_e.plot([x / 1e3 for x in e], acc, marker="o", label=name)
        totals = summary["totals"]
        figures[name] = {"final_accuracy": summary["final_accuracy"], "sim_time_s": totals["sim_time_s"],
                         "energy_j": totals["energy_j"], "bytes": totals["bytes_up"] + totals["bytes_down"],
                         "client_rounds": totals["client_rounds"], "host_seconds": summary["host_seconds"]}
        print(f"{name:14s} acc {summary['final_accuracy']:.3f}  time {totals['sim_time_s'] / 60:7.1f} min  "
              f"energy {totals['energy_j'] / 1e3:7.2f} kJ  clients {totals['client_rounds']}  "
              f"host {summary['host_seconds']:.0f} s")
    ax_t.set(xlabel="simulated time (min)", ylabel="SST-2 accuracy", title="time to accuracy")
    ax_e.set(xlabel="fleet energy (kJ)", title="energy to accuracy")
    for ax in (ax_t, ax_e):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"DeComFL (head only, MiniLM-L6) on three fleets, {scenario.rounds.max} rounds")
    fig.tight_layout()
    out = ROOT / "docs/fleets.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=120)
    write_bench_result(ROOT / "bench/results/fleets.json", figures, __file__)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
