"""FedSPZO against its baselines on a real task: the same fleet, partition and target for all.

Runs every ``scenarios/paper/<task>_*.yaml`` through the engine (one run directory each under
``bench/results/fedspzo_vs_baselines/<task>/``), prints client FLOPs, simulated time, energy and
bytes to the target plus final accuracy, the DeComFL / FedSPZO FLOPs-to-target ratio, and plots
accuracy against each resource. The data is in the repository (``scenarios/data``).

    OMP_NUM_THREADS=1 python bench/fedspzo_vs_baselines.py [--task sst2] [--only decomfl,fedspzo]
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from edgefed.plots import plot_runs  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.results import retargeted  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402

COLUMNS = ("client_flops_to_target", "time_to_target_s", "energy_to_target_j", "bytes_to_target",
           "rounds_to_target", "initial_accuracy", "final_accuracy", "best_accuracy")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--only", default="", help="comma-separated method suffixes to run")
    parser.add_argument("--report", action="store_true", help="only tabulate the run directories already there")
    args = parser.parse_args()
    files = sorted((REPO / "scenarios" / "paper").glob(f"{args.task}_*.yaml"))
    if not files:
        parser.error(f"--task {args.task}: no scenarios/paper/{args.task}_*.yaml")
    if args.only:
        files = [f for f in files if f.stem.split("_", 1)[1] in args.only.split(",")]
    out = REPO / "bench" / "results" / "fedspzo_vs_baselines" / args.task
    results = {}
    for file in files:
        scenario, base = load_scenario(file, ["output.report=false"])
        method = file.stem.split("_", 1)[1]
        if not args.report:
            print(f"running {method} ...", flush=True)
            run_scenario(scenario, base, out / method)
        if (out / method / "rounds.csv").is_file():
            results[method] = retargeted(out / method, scenario.rounds.target_accuracy)

    print(f"\n{args.task}: to target accuracy {next(iter(results.values()))['target_accuracy']}")
    print(f"{'method':10s} " + " ".join(f"{c.replace('_to_target', ''):>16s}" for c in COLUMNS))
    for method, s in results.items():
        cells = [("-" if s[c] is None else f"{s[c]:.4g}") for c in COLUMNS]
        print(f"{method:10s} " + " ".join(f"{v:>16s}" for v in cells))
    figures = {"task": args.task, "methods": {m: {c: s[c] for c in COLUMNS} | {"totals": s["totals"]}
                                               for m, s in results.items()}}
    base, ours = results.get("decomfl"), results.get("fedspzo")
    if base and ours and not (base["client_flops_to_target"] and ours["client_flops_to_target"]):
        common = min(base["best_accuracy"], ours["best_accuracy"])
        print(f"\nthe target was not reached by both; comparing at the best accuracy both reached, {common:.4f}")
        base, ours = retargeted(out / "decomfl", common), retargeted(out / "fedspzo", common)
        figures["common_target"] = common
    if base and ours and base["client_flops_to_target"] and ours["client_flops_to_target"]:
        ratio = base["client_flops_to_target"] / ours["client_flops_to_target"]
        figures["decomfl_over_fedspzo_flops_to_target"] = ratio
        print(f"\nDeComFL / FedSPZO client FLOPs to target: {ratio:.2f}x "
              f"(final accuracy {base['final_accuracy']:.4f} vs {ours['final_accuracy']:.4f})")
    target = next(iter(results.values()))["target_accuracy"]
    for axis in ("time", "energy", "bytes", "flops"):
        plot_runs([out / m for m in results], axis, out / f"accuracy_vs_{axis}.png", list(results), target)
    path = REPO / "bench" / "results" / f"fedspzo_vs_baselines_{args.task}.json"
    write_bench_result(path, figures, __file__)
    print(f"figures: {path}; plots: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
