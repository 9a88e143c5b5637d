"""Named phones against a measured population: the quickstart's phone groups (6 pixel-7a on LTE + 4
galaxy-s24 on 5G) against 10 and 1,000 devices drawn from `flash-phones` on LTE, all replaying one
recorded quickstart run (MiniLM-L6, DeComFL, the same learning in every fleet), over 10 seeds.
Per fleet: time and energy to the target accuracy (mean, min and max over the seeds), devices the
method's memory excludes (and how many could not hold 0.5 to 4 GB), and the spread of per-device
round times: one extra round in which every device of the fleet runs the recorded job.

The population devices take the budget-phone's idle power, battery and thermal figures (the `like`
default) and an active power that follows their drawn FLOP/s (``devices/population.py`` power_fit,
an ESTIMATE over the catalog's phones); the named phones take their own. Each fleet's row quotes the
whole-device J/GFLOP (active power over fp32 FLOP/s) across its devices, and what it was before
issue 40 item 3, when every drawn device took the template's active power. Time differences come
from the drawn FLOP/s and bandwidths. Figures go to bench/results/populations.json.

    OMP_NUM_THREADS=1 python bench/populations.py
"""
from __future__ import annotations

import copy
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

from edgefed.build import build_fleet  # noqa: E402
from edgefed.devices.population import DEFAULT_LIKE, power_fit, quantiles  # noqa: E402
from edgefed.devices.profile import default_catalog  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import validate_scenario  # noqa: E402

RUNS = ROOT / "bench/runs/populations"
RESULTS = ROOT / "bench/results/populations.json"
SEEDS = range(10)
PHONES = [{"device": "pixel-7a", "count": 6, "link": "lte"}, {"device": "galaxy-s24", "count": 4, "link": "5g"}]
FLEETS = {"quickstart phones (10)": PHONES,
          "flash-phones x10": [{"population": "flash-phones", "count": 10, "link": "lte"}],
          "flash-phones x1000": [{"population": "flash-phones", "count": 1000, "link": "lte"}]}
MEMORY_GB = (0.5, 1.0, 2.0, 4.0)


def quickstart(groups: list[dict], name: str, seed: int = 0) -> dict:
    data = yaml.safe_load((ROOT / "scenarios/quickstart.yaml").read_text())
    data.update(name=name, seed=seed)
    data["fleet"]["groups"] = copy.deepcopy(groups)
    data["output"].update(plots=False, report=False)
    return data


def record() -> tuple[Path, float]:
    """The real quickstart run on its phone groups (seed 0): the learning every fleet replays."""
    run_dir = RUNS / "recorded"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    run_scenario(validate_scenario(quickstart(PHONES, "recorded"), ROOT / "scenarios"), ROOT / "scenarios", run_dir)
    return run_dir / "trace.jsonl", time.perf_counter() - start


def replay(groups: list[dict], trace: Path, name: str, seed: int, **rounds) -> tuple[dict, Path]:
    data = quickstart(groups, name, seed)
    data["replay"] = {"trace": str(trace)}
    data["rounds"].update(rounds)
    scenario = validate_scenario(data, ROOT / "scenarios")
    run_dir = RUNS / name
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_scenario(scenario, ROOT / "scenarios", run_dir), run_dir


def spread(rows: list[dict]) -> dict:
    """p10/p50/p90/max of download + compute + upload seconds over the rows, and max / min."""
    seconds = np.array([float(r["download_s"]) + float(r["compute_s"]) + float(r["upload_s"]) for r in rows])
    q = quantiles(seconds)
    return {k: q[k] for k in ("p10", "p50", "p90", "max")}, q["max"] / q["min"]


def three(values: np.ndarray, scale: float = 1.0) -> dict:
    q = quantiles(np.asarray(values) / scale)
    return {k: q[k] for k in ("min", "p50", "max")}


def fleet_figures(label: str, groups: list[dict], trace: Path) -> tuple[dict, dict]:
    """One row of the fleets table, and its per-seed figures."""
    runs = []
    for seed in SEEDS:
        summary, _ = replay(groups, trace, f"{slug(label)}-seed{seed}", seed)
        runs.append(summary)
    size = sum(g["count"] for g in groups)
    _, probe = replay(groups, trace, f"{slug(label)}-every-device", 0, max=1, clients_per_round=size)
    rows = [r for r in csv.DictReader((probe / "clients.csv").open()) if r["status"] == "ok"]
    scenario = validate_scenario(quickstart(groups, "memory"), ROOT / "scenarios")
    fleet = build_fleet(scenario, ROOT / "scenarios")
    memory = np.array([g.device.memory_bytes for g in fleet.groups])[fleet.group]
    flops = np.array([g.device.peak_flops("fp32") for g in fleet.groups])[fleet.group]
    power = np.array([g.device.power_active_w for g in fleet.groups])[fleet.group]
    catalog = default_catalog().devices
    template = np.array([catalog[g.get("like", DEFAULT_LIKE) if "population" in g else g["device"]].power_active_w
                         for g in groups for _ in range(g["count"])])
    times = [s["time_to_target_s"] for s in runs]
    energies = [s["energy_to_target_j"] for s in runs]
    round_time, ratio = spread(rows)
    row = {
        "devices": size,
        "reached target": f"{sum(t is not None for t in times)} of {len(runs)}",
        "time to target s": stats(times),
        "energy to target J": stats(energies),
        "excluded": sum(e["count"] for e in runs[0]["excluded"]),
        "could not hold": {f"{gb:g} GB": int(np.count_nonzero(memory < gb * 1e9)) for gb in MEMORY_GB},
        "fp32 GFLOP/s": three(flops, 1e9),
        "up Mbps": three(fleet.up_mbps),
        "J per GFLOP": spread_j(power / (flops / 1e9)),
        "J per GFLOP, template power (before)": spread_j(template / (flops / 1e9)),
        "round time s, every device": round_time,
        "round time max / min": ratio,
    }
    return row, {"time to target s": times, "energy to target J": energies}


def spread_j(values: np.ndarray) -> dict:
    return {**three(values), "max / min": float(values.max() / values.min())}


def stats(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None}
    return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-").replace("--", "-")


def main() -> None:
    start = time.perf_counter()
    trace, record_s = record()
    print(f"recorded the quickstart phones run in {record_s:.1f} s", flush=True)
    peak = json.loads(trace.read_text().splitlines()[0])["peak_memory_bytes"]
    target = yaml.safe_load((ROOT / "scenarios/quickstart.yaml").read_text())["rounds"]["target_accuracy"]
    fit = power_fit()
    figures = {"power_fit": {"slope": fit.slope, "intercept": fit.intercept, "clamp_j_per_gflop": [fit.low, fit.high],
                             "residuals": fit.residuals(), "note": "ESTIMATE: J/GFLOP above idle vs GFLOP/s, log-log"},
               "target_accuracy": target, "seeds": len(SEEDS), "method_peak_memory_bytes": peak,
               "record_s": record_s, "fleets": {}, "per_seed": {}}
    for label, groups in FLEETS.items():
        t = time.perf_counter()
        row, figures["per_seed"][label] = fleet_figures(label, groups, trace)
        figures["fleets"][label] = row
        r = row["round time s, every device"]
        print(f"{label:24s} time to target {fmt(row['time to target s'])} s, "
              f"energy {fmt(row['energy to target J'])} J, "
              f"reached {row['reached target']}, excluded {row['excluded']}, could not hold 1 GB "
              f"{row['could not hold']['1 GB']}, round time p10/p50/p90/max {r['p10']:.1f}/{r['p50']:.1f}/"
              f"{r['p90']:.1f}/{r['max']:.1f} s ({time.perf_counter() - t:.1f} s)", flush=True)
        for key in ("J per GFLOP, template power (before)", "J per GFLOP"):
            j = row[key]
            print(f"    {key:38s} {j['min']:.4f}..{j['max']:.4f} ({j['max / min']:.1f}x)", flush=True)
    figures["wall_s"] = time.perf_counter() - start
    write_bench_result(RESULTS, figures, __file__)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def fmt(s: dict) -> str:
    return "-" if s["mean"] is None else f"{s['mean']:.1f} [{s['min']:.1f}..{s['max']:.1f}]"


if __name__ == "__main__":
    main()
