"""Accuracy against simulated time, energy, bytes and client FLOPs, for one run or many overlaid."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AXES = {
    "time": ("sim_time_s", "simulated time (s)", 1.0),
    "energy": ("energy_j", "fleet energy (kJ)", 1e-3),
    "bytes": ("bytes", "bytes on the network (MB)", 1e-6),
    "flops": ("client_flops", "client compute (TFLOP)", 1e-12),
}


def read_curve(run_dir: Path) -> dict[str, list[float]]:
    """Cumulative x-values per evaluated round, and the accuracy there."""
    with (run_dir / "rounds.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    curve = {k: [] for k in ("accuracy", "sim_time_s", "energy_j", "bytes", "client_flops")}
    energy = nbytes = flops = 0.0
    for r in rows:
        energy += float(r["energy_j"])
        nbytes += float(r["bytes_up"]) + float(r["bytes_down"])
        flops += float(r["client_flops"])
        if r["accuracy"] != "":
            curve["accuracy"].append(float(r["accuracy"]))
            curve["sim_time_s"].append(float(r["sim_time_s"]))
            curve["energy_j"].append(energy)
            curve["bytes"].append(nbytes)
            curve["client_flops"].append(flops)
    return curve


def run_label(run_dir: Path) -> str:
    return run_dir.name


def plot_runs(run_dirs: list[Path], x: str, out: Path, labels: list[str] | None = None,
              target: float | None = None) -> Path:
    key, xlabel, scale = AXES[x]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, run_dir in enumerate(run_dirs):
        curve = read_curve(run_dir)
        label = labels[i] if labels else run_label(run_dir)
        ax.plot([v * scale for v in curve[key]], curve["accuracy"], marker="o", markersize=3, label=label)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"accuracy vs {xlabel.split(' (')[0]}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_run_dir(run_dir: Path) -> list[Path]:
    """The four standard plots of one run, under ``run_dir/plots``."""
    summary_path = run_dir / "summary.json"
    target = json.loads(summary_path.read_text()).get("target_accuracy") if summary_path.exists() else None
    names = {"time": "time_to_accuracy.png", "energy": "energy_to_accuracy.png",
             "bytes": "bytes_to_accuracy.png", "flops": "flops_to_accuracy.png"}
    return [plot_runs([run_dir], x, run_dir / "plots" / name, target=target) for x, name in names.items()]
