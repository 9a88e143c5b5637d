"""The v2 analysis of bench/fedspzo_paper.py (issue 33): readings at a client-FLOPs budget, the
FLOPs ratio as a curve over targets with its uncertainty, the machine each run learned on, and the
report runs' gzipped traces. Pure functions of run folders (rounds.csv, summary.json,
provenance.json), so they are tested on folders written by hand.

A reading at budget B is the smoothed accuracy at the last evaluation whose cumulative client
FLOPs are at most B. It counts only if the run spent B and was evaluated at least every
B / evaluations (consecutive evaluations, and the last one before B, no further apart than that,
give or take ``slack``: per-round FLOPs vary by a few percent with the batches' lengths).
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefed.results import atomic_write, read_rows, smoothed, to_target

TRACE = "trace.jsonl"
FIGURES = ("client_flops_to_target", "time_to_target_s", "energy_to_target_j", "bytes_to_target")
TOTALS = {"client_flops_to_target": "client_flops", "time_to_target_s": "sim_time_s",
          "energy_to_target_j": "energy_j", "bytes_to_target": None}
# two-sided 95% Student t quantiles (t_0.975) for 1..30 degrees of freedom, used when scipy is absent
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


@dataclass(frozen=True)
class Point:
    """One evaluation: its round, the client FLOPs spent up to and including it, the accuracy and
    its moving mean (None before the first full window)."""
    round: int
    flops: float
    accuracy: float
    smoothed: float | None


def curve(run_dir: Path, window: int) -> tuple[list[Point], float]:
    """The run's evaluations and the client FLOPs it spent in all."""
    spent, points = 0.0, []
    for row in read_rows(run_dir / "rounds.csv"):
        spent += float(row["client_flops"])
        if row["accuracy"] != "":
            points.append((int(row["round"]), spent, float(row["accuracy"])))
    means = smoothed([a for *_, a in points], window)
    return [Point(r, f, a, s) for (r, f, a), s in zip(points, means)], spent


def at_budget(run_dir: Path, budget: float, window: int, evaluations: int = 8, slack: float = 0.0) -> dict:
    """The run read at ``budget``: ``smoothed`` at the last evaluation within it (its ``round`` and
    ``client_flops``), what the run ``spent`` in all, the widest gap between evaluations up to the
    budget, and ``ok``/``why``: whether the reading counts (spent the budget, evaluated often
    enough, a full smoothing window inside it)."""
    points, spent = curve(run_dir, window)
    within = [p for p in points if p.flops <= budget]
    last = within[-1] if within else None
    gaps = [b.flops - a.flops for a, b in zip(within, within[1:])] + [budget - (last.flops if last else 0.0)]
    limit = budget / evaluations * (1 + slack)
    why = None
    if spent < budget:
        why = f"spent {spent / 1e12:.4g} of the budget's {budget / 1e12:.4g} TFLOP (add rounds)"
    elif max(gaps) > limit:
        why = (f"evaluations {max(gaps) / 1e12:.4g} TFLOP apart, more than budget/{evaluations}"
               f"{f' + {slack:.0%}' if slack else ''} = {limit / 1e12:.4g} (evaluate more often)")
    elif last is None or last.smoothed is None:
        why = f"fewer than {window} evaluations within the budget"
    return {"smoothed": last and last.smoothed, "round": last and last.round, "client_flops": last and last.flops,
            "spent": spent, "max_gap": max(gaps), "ok": why is None, "why": why}


def peak(run_dir: Path, budget: float, window: int) -> float | None:
    """The run's best smoothed accuracy at an evaluation within ``budget`` (None before a full window)."""
    return max((p.smoothed for p in curve(run_dir, window)[0] if p.flops <= budget and p.smoothed is not None),
               default=None)


def flops_to(points: list[Point], level: float, budget: float) -> float | None:
    """Client FLOPs to the first evaluation within ``budget`` whose smoothed accuracy reaches ``level``."""
    return next((p.flops for p in points if p.flops <= budget and p.smoothed is not None and p.smoothed >= level),
                None)


def truncated(run_dir: Path, budget: float, target: float | None, window: int) -> dict:
    """The run's to-target figures and totals over its rounds up to its last evaluation within
    ``budget`` (summary.json's figures for the whole run, cut at the budget): what a comparison at
    equal client compute reads."""
    rows = read_rows(run_dir / "rounds.csv")
    points, _ = curve(run_dir, window)
    last = max((p.round for p in points if p.flops <= budget), default=0)
    rows = [r for r in rows if int(r["round"]) <= last]
    totals = {"client_flops": sum(float(r["client_flops"]) for r in rows),
              "sim_time_s": float(rows[-1]["sim_time_s"]) if rows else 0.0,
              "energy_j": sum(float(r["energy_j"]) for r in rows),
              "bytes_up": sum(int(r["bytes_up"]) for r in rows), "bytes_down": sum(int(r["bytes_down"]) for r in rows)}
    return {**to_target(rows, target, window), "totals": totals}


# --- ratios over seeds ---------------------------------------------------------------------------

def bounded(theirs: float | None, ours: float | None, theirs_spent: float, ours_spent: float) -> dict:
    """theirs / ours for one seed: a ``value`` when both reached the target; a bound when only one
    did (the other's spend, which it passed without reaching it); ``neither_reached`` otherwise."""
    if theirs is not None and ours is not None:
        return {"value": theirs / ours}
    if theirs is None and ours is not None:
        return {"at_least": theirs_spent / ours}
    if ours is None and theirs is not None:
        return {"at_most": theirs / ours_spent}
    return {"neither_reached": True}


def ratio(theirs: dict, ours: dict, figure: str) -> dict:
    """theirs / ours for one seed, from two summaries (summary.json, or ``truncated``'s): a value
    when both reached the target; a bound when only one did (what the other spent in the whole
    run); nothing when neither did."""
    total = TOTALS[figure]

    def spent(s):
        return s["totals"][total] if total else s["totals"]["bytes_up"] + s["totals"]["bytes_down"]

    return bounded(theirs[figure], ours[figure], spent(theirs), spent(ours))


def spread(values: list[dict]) -> dict:
    """v1's summary of per-seed ratios: the mean and min-max when every seed gave a value."""
    exact = [v["value"] for v in values if "value" in v]
    out: dict = {"per_seed": values}
    if len(exact) == len(values):
        out.update(mean=float(np.mean(exact)), min=float(np.min(exact)), max=float(np.max(exact)))
    return out


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided ``confidence`` quantile of Student's t: scipy's when installed, else the
    table (95% only, 1..30 degrees of freedom)."""
    try:
        from scipy.stats import t
    except ImportError:
        if abs(confidence - 0.95) > 1e-12 or not 1 <= df <= len(T975):
            raise ValueError(f"without scipy only a 95% interval on 1..{len(T975)} degrees of freedom") from None
        return T975[df - 1]
    return float(t.ppf((1 + confidence) / 2, df))


def over_seeds(ratios: list[dict], confidence: float) -> dict:
    """Over seeds: how many ratios are exact and how many were left out of the figures as bounds
    (or neither reached), the exact ones' min-max and geometric mean, and a t-interval on their
    mean log-ratio (at least 2 exact values), given as ratios."""
    exact = [r["value"] for r in ratios if "value" in r]
    out = {"exact": len(exact), "excluded": len(ratios) - len(exact),
           "excluded_as": {k: sum(k in r for r in ratios) for k in ("at_least", "at_most", "neither_reached")}}
    if exact:
        logs = np.log(exact)
        out.update(min=float(min(exact)), max=float(max(exact)), mean_log=float(logs.mean()),
                   geometric_mean=float(math.exp(logs.mean())))
    if len(exact) >= 2:
        half = t_quantile(confidence, len(exact) - 1) * float(logs.std(ddof=1)) / math.sqrt(len(exact))
        out["t_interval"] = [math.exp(out["mean_log"] - half), math.exp(out["mean_log"] + half)]
    return out


def reading(run_dir: Path, target: float, budget: float, window: int) -> dict:
    """One run at one target, within the budget: client FLOPs to the first crossing (None: not
    reached), its final smoothed accuracy at the budget, whether that ends at or above the target,
    and what it spent up to that last evaluation (the bound when it never crossed)."""
    points, _ = curve(run_dir, window)
    within = [p for p in points if p.flops <= budget]
    final = within[-1].smoothed if within else None
    return {"flops_to_target": flops_to(points, target, budget), "final_smoothed": final,
            "ends_at_or_above": final is not None and final >= target,
            "spent": within[-1].flops if within else 0.0}


def mean_curve(run_dirs: list[Path], window: int) -> list[tuple[int, float, float]]:
    """Seeds averaged: at each evaluation round every run has a smoothed accuracy for, the mean
    cumulative client FLOPs and the mean smoothed accuracy."""
    curves = [{p.round: p for p in curve(r, window)[0] if p.smoothed is not None} for r in run_dirs]
    rounds = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return [(n, float(np.mean([c[n].flops for c in curves])), float(np.mean([c[n].smoothed for c in curves])))
            for n in rounds]


def mean_reading(run_dirs: list[Path], target: float, budget: float, window: int) -> dict:
    """``reading`` for the seed-mean curve: its first crossing, its final value and spend."""
    points = [(n, f, s) for n, f, s in mean_curve(run_dirs, window) if f <= budget]
    final = points[-1][2] if points else None
    return {"flops_to_target": next((f for _, f, s in points if s >= target), None), "final_smoothed": final,
            "ends_at_or_above": final is not None and final >= target, "spent": points[-1][1] if points else 0.0}


def ratio_curve(theirs: dict[int, Path], ours: dict[int, Path], initial: float, gain: float,
                fractions: list[float], marked: float, budget: float, window: int, confidence: float) -> dict:
    """theirs / ours client FLOPs to each target ``initial + f x gain``: per seed (paired by seed)
    with both runs' crossings and final accuracies, over seeds (``over_seeds``), and on the seed-mean
    curves. Targets a run does not reach within the budget give bounds, never values."""
    seeds = sorted(set(theirs) & set(ours))
    points = []
    for f in sorted(set(fractions) | {marked}):
        target = initial + f * gain
        per_seed = []
        for seed in seeds:
            a, b = (reading(side[seed], target, budget, window) for side in (theirs, ours))
            per_seed.append({"seed": seed, "theirs": a, "ours": b,
                             "ratio": bounded(a["flops_to_target"], b["flops_to_target"], a["spent"], b["spent"])})
        a, b = (mean_reading([side[s] for s in seeds], target, budget, window) for side in (theirs, ours))
        points.append({"fraction": f, "target": target, "marked": math.isclose(f, marked),
                       **over_seeds([p["ratio"] for p in per_seed], confidence), "per_seed": per_seed,
                       "seed_mean": {"theirs": a, "ours": b, "ratio": bounded(a["flops_to_target"],
                                                                              b["flops_to_target"], a["spent"],
                                                                              b["spent"])}})
    return {"seeds": seeds, "confidence": confidence, "marked_fraction": marked, "points": points}


def compare(runs: dict[str, dict[int, Path]], headline: str, readings: dict[Path, dict], initial: float,
            gain: float, target: float, plan_target, budget: float, window: int) -> tuple[dict, dict, dict]:
    """Every other name against ``headline`` (runs by name, then seed), paired by seed: the ratio
    curve over the plan's targets, v1's four to-target ratios at the single target (each run cut
    at the budget), and the smoothed accuracy at the budget (the headline's minus the other's)."""
    curves, ratios, at_budget = {}, {}, {}
    ours = runs[headline]
    for name, theirs in runs.items():
        if name == headline:
            continue
        pair = f"{name}/{headline}"
        curves[pair] = ratio_curve(theirs, ours, initial, gain, plan_target.curve, plan_target.fraction_of_gain,
                                   budget, window, plan_target.confidence)
        seeds = curves[pair]["seeds"]
        cut = [(truncated(theirs[s], budget, target, window), truncated(ours[s], budget, target, window))
               for s in seeds]
        ratios[pair] = {f: spread([ratio(a, b, f) for a, b in cut]) for f in FIGURES}
        gaps = [readings[ours[s]]["smoothed"] - readings[theirs[s]]["smoothed"] for s in seeds]
        at_budget[pair] = {"seeds": seeds, "ours_minus_theirs": gaps, "mean": float(np.mean(gaps)),
                           "min": float(np.min(gaps)), "max": float(np.max(gaps))}
    return curves, ratios, at_budget


def runs_table(run_dirs: list[Path], readings: dict[Path, dict], budget: float, target: float, window: int) -> dict:
    """One pick's report runs, each read at the budget: initial and final smoothed accuracy, the
    client FLOPs there and v1's to-target figures up to it."""
    cut = [truncated(r, budget, target, window) for r in run_dirs]
    return {"rounds": [readings[r]["round"] for r in run_dirs],
            "initial_accuracy": [curve(r, 1)[0][0].accuracy for r in run_dirs],
            "final_smoothed_accuracy": [readings[r]["smoothed"] for r in run_dirs],
            "client_flops": [readings[r]["client_flops"] for r in run_dirs],
            **{f: [c[f] for c in cut] for f in (*FIGURES, "rounds_to_target")}}


def per_round(run_dir: Path) -> float:
    """The run's mean client FLOPs per training round."""
    _, spent = curve(run_dir, 1)
    return spent / max(1, len(read_rows(run_dir / "rounds.csv")) - 1)


def report_cadence(per_round: float, budget: float, evaluations: int, margin: float) -> dict:
    """Rounds that spend ``budget`` at ``per_round`` FLOPs a round with ``margin`` to spare, a whole
    number of evaluations, one at least every budget/evaluations (with the margin too)."""
    every = max(1, math.floor(budget / evaluations / ((1 + margin) * per_round)))
    return {"rounds.max": every * math.ceil((1 + margin) * budget / (every * per_round)), "rounds.eval_every": every}


def flops_to_levels(run_dirs: list[Path], levels: list[float], budget: float, window: int) -> dict:
    """Per level: the mean over the runs of the client FLOPs to reach it within the budget (None
    when a run does not)."""
    points = [curve(r, window)[0] for r in run_dirs]
    out = {}
    for level in levels:
        flops = [flops_to(p, level, budget) for p in points]
        out[str(level)] = None if None in flops else float(np.mean(flops))
    return out


def sensitivity(labels: list[str], levels: list[float], tuning: list[dict]) -> dict:
    """Per label and tuning level: the (configuration, lr) with the least client FLOPs to reach it
    within the budget (not the rule: what a choice by FLOPs to a level would have picked)."""
    out = {}
    for label in labels:
        mine = [r for r in tuning if r["label"] == label]
        out[label] = {}
        for level in map(str, levels):
            reached = [r for r in mine if r["client_flops_to_level"][level] is not None]
            best = min(reached, key=lambda r: (r["client_flops_to_level"][level], r["lr"]), default=None)
            out[label][level] = best and {**{k: v for k, v in best.items() if k not in (
                "runs", "reused", "client_flops_to_level")}, "client_flops": best["client_flops_to_level"][level]}
    return out


def print_summary(table: dict, curves: dict, at_budget: dict, target: float, commits: list[str],
                  headline: str) -> None:
    print(f"\ntarget accuracy {target:.4f} (smoothed); per pick over seeds: mean smoothed accuracy within the "
          "report budget, seeds reaching the target")
    for name, row in table.items():
        reached = sum(v is not None for v in row["client_flops_to_target"])
        print(f"  {name:14s} {np.mean(row['final_smoothed_accuracy']):.4f}  {reached}/{len(row['seeds'])}  "
              f"{row['config']}")
    for pair, c in curves.items():
        print(f"  {pair} client FLOPs to initial + f x gain (exact seeds: geometric mean [t-interval], "
              "excluded as bounds):")
        for p in c["points"]:
            mean = f"{p['geometric_mean']:.2f}x" if "geometric_mean" in p else "-"
            band = f" [{p['t_interval'][0]:.2f}, {p['t_interval'][1]:.2f}]" if "t_interval" in p else ""
            print(f"    f {p['fraction']:.1f}{'*' if p['marked'] else ' '} {mean}{band}, {p['excluded']} excluded; "
                  f"seed-mean curves {p['seed_mean']['ratio']}")
        gap = at_budget[pair]
        print(f"    at the report budget: {headline} minus the other {gap['mean']:+.4f} "
              f"[{gap['min']:+.4f}, {gap['max']:+.4f}] smoothed accuracy")
    if len(commits) > 1:
        print(f"  runs from {len(commits)} commits ({', '.join(c[:7] for c in commits)}): check they are "
              "learning-equivalent (bench/same_behaviour.py)")


def plot_ratio_curve(entry: dict, name: str, out: Path) -> Path:
    """Ratio against the fraction of the reference's gain: each seed's exact ratio, its bounds
    (triangles), the geometric mean with its t-interval band, the min-max and the seed-mean
    curves' ratio; the plan's single target marked."""
    import edgefed.plots as plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    pts = entry["points"]
    fs = [p["fraction"] for p in pts]
    for p in pts:
        for s in p["per_seed"]:
            r = s["ratio"]
            if "value" in r:
                ax.plot(p["fraction"], r["value"], "o", color="tab:blue", markersize=3, alpha=0.6)
            elif "at_least" in r:
                ax.plot(p["fraction"], r["at_least"], "^", color="tab:red", markersize=5, alpha=0.6)
            elif "at_most" in r:
                ax.plot(p["fraction"], r["at_most"], "v", color="tab:green", markersize=5, alpha=0.6)
    banded = [p for p in pts if "t_interval" in p]
    if banded:
        ax.fill_between([p["fraction"] for p in banded], [p["t_interval"][0] for p in banded],
                        [p["t_interval"][1] for p in banded], color="tab:blue", alpha=0.2, linewidth=0,
                        label=f"{entry['confidence']:.0%} t-interval (mean log-ratio)")
    means = [(p["fraction"], p["geometric_mean"]) for p in pts if "geometric_mean" in p]
    if means:
        ax.plot(*zip(*means), "-", color="tab:blue", label="geometric mean of exact seeds")
    for key in ("min", "max"):
        ends = [(p["fraction"], p[key]) for p in pts if key in p]
        if ends:
            ax.plot(*zip(*ends), ":", color="tab:blue", linewidth=1, label="min-max" if key == "min" else None)
    seed_mean = [(p["fraction"], p["seed_mean"]["ratio"]["value"]) for p in pts if "value" in p["seed_mean"]["ratio"]]
    if seed_mean:
        ax.plot(*zip(*seed_mean), "s--", color="tab:orange", markersize=3, label="seed-mean curves")
    ax.axvline(entry["marked_fraction"], color="grey", linestyle="--", linewidth=1,
               label=f"plan's target (f = {entry['marked_fraction']})")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_xticks(fs)
    ax.set_xlabel("target: initial + f x reference's mean gain")
    ax.set_ylabel("client FLOPs to target, ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{name}: client FLOPs ratio over targets (triangles: bounds)", fontsize=10)
    fig.tight_layout()
    return plots._save(fig, out)


# --- where a run learned, and its trace ------------------------------------------------------------

def machine(run_dir: Path) -> dict:
    """From the run's provenance.json: the ``kind`` of machine its learning ran on (``cpu``, or
    the GPU model), the CPU, and the commit (and whether the checkout was dirty)."""
    path = run_dir / "provenance.json"
    if not path.is_file():
        return {"kind": "unknown (no provenance.json)", "cpu": None, "gpu": None, "commit": None, "dirty": None}
    p = json.loads(path.read_text())
    device = p.get("learning_device") or "none"
    gpu = (p.get("machine") or {}).get("gpu")
    kind = f"gpu {gpu or device}" if device.startswith("cuda") else device
    return {"kind": kind, "cpu": (p.get("machine") or {}).get("cpu"), "gpu": gpu,
            "commit": (p.get("code") or {}).get("commit"), "dirty": (p.get("code") or {}).get("dirty")}


def mixed_kinds(machines: dict[str, dict]) -> str | None:
    """None when every run (name -> ``machine``) learned on one kind of machine; else what they mix."""
    kinds: dict[str, list[str]] = {}
    for name, m in machines.items():
        kinds.setdefault(m["kind"], []).append(name)
    if len(kinds) <= 1:
        return None
    return "; ".join(f"{len(names)} on {kind} ({', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''})"
                     for kind, names in sorted(kinds.items()))


def gzip_trace(run_dir: Path) -> Path | None:
    """trace.jsonl -> trace.jsonl.gz (bytes that depend on the trace alone), the plain file removed."""
    plain = run_dir / TRACE
    if not plain.is_file():
        return None
    packed = run_dir / f"{TRACE}.gz"
    atomic_write(packed, gzip.compress(plain.read_bytes(), mtime=0))
    plain.unlink()
    return packed


def unpacked_trace(run_dir: Path, folder: Path) -> Path:
    """The plain trace a replay reads: the run's trace.jsonl.gz unpacked to ``folder``/<run>.jsonl
    (the run folder keeps only the packed one)."""
    plain = folder / f"{run_dir.name}.jsonl"
    if (run_dir / f"{TRACE}.gz").is_file():
        atomic_write(plain, gzip.decompress((run_dir / f"{TRACE}.gz").read_bytes()))
    return plain
