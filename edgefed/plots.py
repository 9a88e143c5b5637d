"""Accuracy against simulated time, energy, bytes and client FLOPs, for one run or many overlaid."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import edgefed.results as results  # noqa: E402

AXES = {
    "time": ("sim_time_s", "simulated time (s)", 1.0),
    "energy": ("energy_j", "fleet energy (kJ)", 1e-3),
    "bytes": ("bytes", "bytes on the network (MB)", 1e-6),
    "flops": ("client_flops", "client compute (TFLOP)", 1e-12),
}


def read_curve(run_dir: Path) -> dict[str, list[float]]:
    """Cumulative x-values per evaluated round, and the accuracy there."""
    rows = results.read_rows(run_dir / "rounds.csv")
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
    _decorate(ax, xlabel, target, legend_size=8)
    fig.tight_layout()
    return _save(fig, out)


def _decorate(ax, xlabel: str, target: float | None, legend_size: int, note: str = "", title_size=None) -> None:
    """The target line, labels, grid, legend and title every accuracy plot shares."""
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    ax.set_title(f"accuracy vs {xlabel.split(' (')[0]}" + note, fontsize=title_size)


def plot_run_dir(run_dir: Path) -> list[Path]:
    """The four standard plots of one run, under ``run_dir/plots``."""
    summary_path = run_dir / "summary.json"
    target = json.loads(summary_path.read_text()).get("target_accuracy") if summary_path.exists() else None
    names = {"time": "time_to_accuracy.png", "energy": "energy_to_accuracy.png",
             "bytes": "bytes_to_accuracy.png", "flops": "flops_to_accuracy.png"}
    return [plot_runs([run_dir], x, run_dir / "plots" / name, target=target) for x, name in names.items()]


# -- overlays of many runs or sweeps (``edgefed plot``) ---------------------------------------
SEED_FREE = ("seed", "name", "output", "host")  # scenario sections that do not change what is learned


class PlotInputError(ValueError):
    """A path that is neither a run nor a sweep directory."""


def sweep_parameters(rows: list[dict]) -> list[str]:
    """sweep.csv's parameter columns: those between ``run_dir`` and the summary's ``status``."""
    columns = list(rows[0])
    return columns[2: columns.index("status")]


def _sweep_groups(sweep_dir: Path) -> dict[str, list[Path]]:
    """A sweep's finished points (a failed one has no curve) grouped by their parameters other
    than the seed, labelled by them."""
    rows = [row for row in results.read_rows(sweep_dir / "sweep.csv") if row["status"] == "done"]
    if not rows:
        return {}
    params = sweep_parameters(rows)
    groups: dict[str, list[Path]] = {}
    for row in rows:
        label = ", ".join(f"{k}={row[k]}" for k in params if k != "seed") or sweep_dir.name
        groups.setdefault(label, []).append(sweep_dir / row["run_dir"])
    return groups


def _scenario_key(run_dir: Path) -> str:
    import yaml

    path = run_dir / "scenario.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {"dir": str(run_dir)}
    return json.dumps({k: v for k, v in data.items() if k not in SEED_FREE and not k.startswith("_")},
                      sort_keys=True, default=str)


def collect(paths: list[Path]) -> dict[str, list[Path]]:
    """Label -> run directories: a sweep's seed-free parameter groups, and bare runs grouped with
    the other runs of the same scenario up to its seed."""
    groups: dict[str, list[Path]] = {}
    by_key: dict[str, str] = {}
    for path in paths:
        if (path / "sweep.csv").is_file():
            for label, runs in _sweep_groups(path).items():
                groups.setdefault(label if len(paths) == 1 else f"{path.name}: {label}", []).extend(runs)
        elif (path / "rounds.csv").is_file():
            key = _scenario_key(path)
            label = by_key.setdefault(key, path.name)
            groups.setdefault(label, []).append(path)
        else:
            raise PlotInputError(f"{path}: not a run directory (rounds.csv) or a sweep (sweep.csv)")
    return groups


def mean_curve(run_dirs: list[Path], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x and accuracy averaged over seeds at each evaluation, with the accuracy's min and max
    (runs are cut to the shortest)."""
    curves = [read_curve(d) for d in run_dirs]
    n = min(len(c["accuracy"]) for c in curves)
    xs = np.array([c[key][:n] for c in curves], dtype=float)
    ys = np.array([c["accuracy"][:n] for c in curves], dtype=float)
    return xs.mean(0), ys.mean(0), ys.min(0), ys.max(0)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, format=out.suffix.lstrip("."))
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_overlay(groups: dict[str, list[Path]], x: str, out: Path, target: float | None = None) -> Path:
    """Accuracy against ``x`` for each group: the mean over its seeds, the band their min to max."""
    key, xlabel, scale = AXES[x]
    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    for label, runs in groups.items():
        mx, my, lo, hi = mean_curve(runs, key)
        seeds = f" (mean of {len(runs)} seeds)" if len(runs) > 1 else ""
        line, = ax.plot(mx * scale, my, marker="o", markersize=3, label=label + seeds)
        if len(runs) > 1:
            ax.fill_between(mx * scale, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    banded = any(len(r) > 1 for r in groups.values())
    _decorate(ax, xlabel, target, legend_size=7, note=" (band: min to max over seeds)" if banded else "",
              title_size=10)
    fig.tight_layout()
    return _save(fig, out)


def run_to_target(run_dir: Path, target: float | None) -> tuple[float | None, float | None]:
    """Simulated time and fleet energy to ``target`` (None: the run's own, from summary.json)."""
    if target is None:
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        summary = results.retargeted(run_dir, target)
    return summary["time_to_target_s"], summary["energy_to_target_j"]


def mean_to_target(groups: dict[str, list[Path]], target: float | None = None) -> dict[str, tuple[float, float] | None]:
    """Mean simulated time (s) and fleet energy (J) to the target per group; None where a seed
    never reached it."""
    out = {}
    for label, runs in groups.items():
        pairs = [run_to_target(r, target) for r in runs]
        out[label] = None if any(t is None for t, _ in pairs) else tuple(np.mean(pairs, axis=0))
    return out


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Labels of the points no other point beats on both time and energy, by increasing time."""
    front = [a for a, (ta, ea) in points.items()
             if not any((tb <= ta and eb <= ea) and (tb, eb) != (ta, ea) for tb, eb in points.values())]
    return sorted(front, key=lambda label: points[label])


def plot_pareto(groups: dict[str, list[Path]], out: Path, target: float | None = None) -> Path:
    """Time vs energy to the target accuracy (the runs' own, or ``target``), one point per group."""
    figures = mean_to_target(groups, target)
    reached = {k: v for k, v in figures.items() if v is not None}
    missed = [k for k, v in figures.items() if v is None]
    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    front = pareto_front(reached)
    unit, scale = ("kJ", 1e-3) if max((e for _, e in reached.values()), default=0.0) >= 1e3 else ("J", 1.0)
    for label, (t, e) in reached.items():
        ax.scatter(t, e * scale, s=40, zorder=3, marker="*" if label in front else "o",
                   label=label + (" (Pareto front)" if label in front else ""))
    if len(front) > 1:
        ax.plot([reached[k][0] for k in front], [reached[k][1] * scale for k in front], color="grey",
                linestyle=":", linewidth=1)
    ax.set_xlabel("simulated time to target (s)")
    ax.set_ylabel(f"fleet energy to target ({unit})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    title = "time vs energy to target" + (f" accuracy {target:g}" if target is not None else "")
    if missed:
        title += f" ({len(missed)} never reached it: {', '.join(missed)})"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def common_target(groups: dict[str, list[Path]]) -> float | None:
    """The target accuracy, if every run shares one."""
    targets = {json.loads((r / "summary.json").read_text()).get("target_accuracy")
               for runs in groups.values() for r in runs if (r / "summary.json").exists()}
    return targets.pop() if len(targets) == 1 else None
