"""FedSPZO in the regime of its paper against baselines at their best (bench/fedspzo_paper.yaml).

One command runs the whole comparison, stage by stage; every stage is an `edgefed sweep` written
under the output folder, so an interrupted grid resumes where it stopped (finished points are
skipped) and anyone can re-run or inspect one point:

    python bench/fedspzo_paper.py check              # validate the plan; no run
    python bench/fedspzo_paper.py tune   [--workers N]   # each (method, config, lr), one seed, tuning split
    python bench/fedspzo_paper.py report [--workers N]   # each method's best, every seed, test split
    python bench/fedspzo_paper.py classes            # replay the reported traces per device class
    python bench/fedspzo_paper.py summary            # target, paired ratios, plots, the JSON
    python bench/fedspzo_paper.py all    [--workers N]

Choices are made by rules fixed in the plan before any run: per method the (configuration, lr)
with the best final smoothed tuning accuracy (ties: the smaller lr); the target from the
reference method's report runs alone. Besides the paired to-target ratios, `summary` sets each
baseline's smoothed accuracy beside FedSPZO's at the client compute of the cheaper whole run
(a fixed-budget view, added after the target was fixed). Writes bench/results/fedspzo_paper.json
and plots.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from edgefed.algorithms.registry import METHODS
from edgefed.provenance import write_bench_result
from edgefed.results import atomic_write, retarget, smoothed
from edgefed.scenario import ScenarioError, load_scenario, resolve_path
from edgefed.sweep import is_complete, load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "bench" / "fedspzo_paper.yaml"
OUT = REPO / "bench" / "results" / "fedspzo_paper"
RESULT = REPO / "bench" / "results" / "fedspzo_paper.json"
FIGURES = ("client_flops_to_target", "time_to_target_s", "energy_to_target_j", "bytes_to_target")
TOTALS = {"client_flops_to_target": "client_flops", "time_to_target_s": "sim_time_s",
          "energy_to_target_j": "energy_j", "bytes_to_target": None}
HEADLINE = "fedspzo"
# the same engineering for every method that takes the setting (a method's own axes, such as
# perturbations or split, come from its configurations)
SHARED = {"local_steps", "batch_size", "trainable", "eps", "distribution", "cache_z"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Regime(Strict):
    base: str = Field(description="scenario every run starts from, relative to the plan")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides; algorithm.* go to every method")


class Stage(Strict):
    seeds: list[int] = Field(min_length=1)
    rounds: PositiveInt
    eval_every: PositiveInt
    smoothing: PositiveInt


class Tuning(Stage):
    tuning_split: PositiveInt = Field(description="training examples held out for choosing (never the test split)")


class Target(Strict):
    reference_method: str
    fraction_of_gain: PositiveFloat = Field(le=1.0, description="of the reference's gain from its initial "
                                            "to its final smoothed accuracy")


class Plan(Strict):
    regime: Regime
    lr_grid: dict[str, list[PositiveFloat]] = Field(description="zero_order / first_order -> learning rates")
    methods: dict[str, list[dict[str, Any]]]
    tuning: Tuning
    report: Stage
    target: Target
    device_classes: dict[str, list[dict[str, Any]]]


def fail(message: str) -> None:
    print(f"fedspzo_paper: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_plan(path: Path) -> Plan:
    try:
        return Plan.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
    except (OSError, yaml.YAMLError) as exc:
        fail(f"{path}: {str(exc).splitlines()[0]}")


@functools.cache
def base_algorithm(path: Path) -> dict:
    return load_scenario(path)[0].algorithm.model_dump()


def algorithm(plan: Plan, method: str, config: dict, lr: float) -> dict:
    """The full ``algorithm`` section of one point: the regime's shared settings that the method
    takes, then its configuration and learning rate."""
    fields = SHARED & set(METHODS[method].Spec.model_fields)
    shared = {k: v for k, v in base_algorithm(resolve_path(PLAN.parent, plan.regime.base)).items() if k in fields}
    shared.update({k.split(".", 1)[1]: v for k, v in plan.regime.set.items() if k.startswith("algorithm.")
                   and k.split(".", 1)[1] in fields})
    return {"name": method, **shared, **config, "lr": lr}


def lrs(plan: Plan, method: str) -> list[float]:
    return plan.lr_grid["first_order" if method == "fedavg" else "zero_order"]


def stage_set(plan: Plan, stage: Stage, evaluate_on: str) -> dict:
    held = plan.tuning.tuning_split  # held out in both stages: the same training data
    return {**{k: v for k, v in plan.regime.set.items() if not k.startswith("algorithm.")},
            "rounds.max": stage.rounds, "rounds.eval_every": stage.eval_every,
            "rounds.target_smoothing": stage.smoothing, "rounds.target_accuracy": None,
            "task.tuning_split": held, "task.evaluate_on": evaluate_on, "output.plots": False}


def write_sweep(folder: Path, plan: Plan, stage: Stage, evaluate_on: str, points: list[dict],
                seeds: bool = True) -> Path:
    """The stage as an `edgefed sweep` file (seeds as a grid axis unless the points name theirs),
    returned for run_sweep."""
    folder.mkdir(parents=True, exist_ok=True)
    # relative to the sweep file (as a sweep reads it), so a committed stage runs from any checkout
    base = os.path.relpath(resolve_path(PLAN.parent, plan.regime.base), folder.resolve())
    sweep = {"base": base, "set": stage_set(plan, stage, evaluate_on),
             **({"grid": {"seed": stage.seeds}} if seeds else {}), "points": points}
    path = folder / "sweep.yaml"
    atomic_write(path, yaml.safe_dump(sweep, sort_keys=False))
    return path


def tuning_points(plan: Plan) -> list[dict]:
    return [{"algorithm": algorithm(plan, m, config, lr)}
            for m, configs in plan.methods.items() for config in configs for lr in lrs(plan, m)]


def check(plan: Plan) -> None:
    """Every bad input, before any run: unknown methods, a configuration the method refuses, a
    FedSPZO split outside the layers or with a block that has nothing to perturb, missing data."""
    unknown = sorted(set(plan.methods) - set(METHODS))
    if unknown:
        fail(f"methods: unknown method {unknown[0]!r} (known: {', '.join(METHODS)})")
    if plan.target.reference_method not in plan.methods:
        fail(f"target.reference_method: {plan.target.reference_method!r} is not one of the plan's methods")
    for key in ("zero_order", "first_order"):
        if key not in plan.lr_grid:
            fail(f"lr_grid.{key}: missing")
    try:
        load_sweep(write_sweep(OUT / "tune", plan, plan.tuning, "tuning", tuning_points(plan)))
    except ScenarioError as exc:
        fail(str(exc))
    splits = [c["split"] for c in plan.methods.get(HEADLINE, []) if c.get("split", "auto") != "auto"]
    if splits:
        from edgefed.build import build_learning

        scenario, base = load_scenario(resolve_path(PLAN.parent, plan.regime.base),
                                       [f"{k}={json.dumps(v)}" for k, v in plan.regime.set.items()])
        try:
            algo = build_learning(scenario, base)
        except ScenarioError as exc:
            fail(str(exc))
        trainable = set(algo.trainable.names)
        for split in splits:
            if not 0 < split < algo.model.num_layers:
                fail(f"methods.{HEADLINE}: split {split} is outside 1..{algo.model.num_layers - 1} "
                     "(both blocks must hold layers)")
            block1, block2 = algo.model.block_param_names(split)
            if not (block1 & trainable and block2 & trainable):
                fail(f"methods.{HEADLINE}: split {split} leaves a block with no trainable parameter "
                     f"under {scenario.algorithm.trainable!r}")


def summaries(folder: Path) -> list[tuple[dict, dict | None]]:
    """Each point's overrides and its summary.json (None while unfinished), in sweep order."""
    _, points = load_sweep(folder / "sweep.yaml")
    return [(p.overrides, json.loads((folder / p.id / "summary.json").read_text())
             if is_complete(folder / p.id) else None) for p in points]


def describe(algo: dict, plan: Plan) -> dict:
    """What distinguishes a point: its lr and the keys its plan configuration sets."""
    keys = {k for config in plan.methods[algo["name"]] for k in config}
    return {"lr": algo["lr"], **{k: algo[k] for k in sorted(keys)}}


def choose(plan: Plan) -> dict[str, dict]:
    """Per method the tuning point with the best final smoothed accuracy (ties: the smaller lr).
    Every tuning point must have finished: a choice among some of a method's points is not the
    plan's rule (a grid cut short by a time limit once reported a configuration chosen that way)."""
    best: dict[str, tuple] = {}
    tuned = summaries(OUT / "tune")
    unfinished = [o["algorithm"]["name"] for o, s in tuned if s is None]
    if unfinished:
        fail(f"tune stage unfinished: {len(unfinished)} of {len(tuned)} tuning runs have no summary "
             f"({', '.join(sorted(set(unfinished)))}); run `tune` first")
    for overrides, summary in tuned:
        if summary.get("final_smoothed_accuracy") is None:
            continue
        algo = overrides["algorithm"]
        key = (summary["final_smoothed_accuracy"], -algo["lr"])
        if algo["name"] not in best or key > best[algo["name"]][0]:
            best[algo["name"]] = (key, algo)
    missing = [m for m in plan.methods if m not in best]
    if missing:
        fail(f"tune stage unfinished: no finished tuning run for {', '.join(missing)} (run `tune` first)")
    return {m: algo for m, (_, algo) in best.items()}


def run_stage(sweep: Path, workers: int) -> None:
    result = run_sweep(sweep, sweep.parent, workers=workers,
                       on_done=lambda pid, s: print(f"  {pid}: final {s['final_accuracy']:.4f}", flush=True))
    for pid, why in result["failed"].items():
        print(f"  {pid}: FAILED ({why['reason']})", flush=True)
    print(f"{sweep.parent.name}: {len(result['ran'])} ran, {len(result['skipped'])} already done, "
          f"{len(result['failed'])} failed", flush=True)


def tune(plan: Plan, workers: int) -> None:
    run_stage(write_sweep(OUT / "tune", plan, plan.tuning, "tuning", tuning_points(plan)), workers)


def report(plan: Plan, workers: int) -> None:
    chosen = choose(plan)
    order = [plan.target.reference_method] + [m for m in plan.methods if m != plan.target.reference_method]
    run_stage(write_sweep(OUT / "report", plan, plan.report, "test", [{"algorithm": chosen[m]} for m in order]),
              workers)


def report_runs(plan: Plan) -> dict[str, list[Path]]:
    """Each method's finished report run directories, by seed order."""
    _, points = load_sweep(OUT / "report" / "sweep.yaml")
    runs: dict[str, list[Path]] = {}
    for p in points:
        if is_complete(OUT / "report" / p.id):
            runs.setdefault(p.overrides["algorithm"]["name"], []).append(OUT / "report" / p.id)
    return runs


def fix_target(plan: Plan, runs: dict[str, list[Path]]) -> tuple[float, list[float]]:
    """The plan's rule on the reference method's report runs only: its initial accuracy plus
    ``fraction`` of its gain to the final smoothed test accuracy, each a mean over its seeds (the
    initial model is every method's: a target below it would be reached before any learning).
    Every report run's summary.json is rewritten for it."""
    reference = runs.get(plan.target.reference_method, [])
    if len(reference) < len(plan.report.seeds):
        fail(f"report stage unfinished: {len(reference)} of {len(plan.report.seeds)} "
             f"{plan.target.reference_method} seeds (run `report` first)")
    sums = [json.loads((r / "summary.json").read_text()) for r in reference]
    initial = float(np.mean([s["initial_accuracy"] for s in sums]))
    final = float(np.mean([s["final_smoothed_accuracy"] for s in sums]))
    target = initial + plan.target.fraction_of_gain * (final - initial)
    for run_dirs in runs.values():
        for run_dir in run_dirs:
            retarget(run_dir, target)
    gains = [s["final_smoothed_accuracy"] - s["initial_accuracy"] for s in sums]
    print(f"target {target:.4f}: {plan.target.reference_method} from {initial:.4f} to {final:.4f} "
          f"(gain per seed {', '.join(f'{g:+.4f}' for g in gains)})", flush=True)
    return target, gains


def classes(plan: Plan) -> None:
    """Replay every report run's learning trace on each single-class fleet (no learning)."""
    points = [{"replay": {"trace": str(run_dir / "trace.jsonl")}, "algorithm": run_algorithm(run_dir),
               "seed": seed_of(run_dir), "fleet.groups": groups}
              for run_dirs in report_runs(plan).values() for run_dir in run_dirs
              for groups in plan.device_classes.values()]
    sweep = write_sweep(OUT / "classes", plan, plan.report, "test", points, seeds=False)
    current = {p.id for p in load_sweep(sweep)[1]}
    for old in sweep.parent.glob("p[0-9]*"):  # a replay of a run no longer reported (ids follow positions)
        if old.name not in current:
            shutil.rmtree(old)
    run_stage(sweep, 1)


def run_algorithm(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "scenario.yaml").read_text())["algorithm"]


def seed_of(run_dir: Path) -> int:
    return yaml.safe_load((run_dir / "scenario.yaml").read_text())["seed"]


def ratio(theirs: dict, ours: dict, figure: str) -> dict:
    """theirs / ours for one seed: a value when both reached the target; a bound when only one did
    (what the other spent in the whole run); nothing when neither did."""
    a, b = theirs[figure], ours[figure]
    if a is not None and b is not None:
        return {"value": a / b}
    total = TOTALS[figure]

    def spent(s):
        return s["totals"][total] if total else s["totals"]["bytes_up"] + s["totals"]["bytes_down"]

    if a is None and b is not None:
        return {"at_least": spent(theirs) / b}
    if b is None and a is not None:
        return {"at_most": a / spent(ours)}
    return {"neither_reached": True}


def spread(values: list[dict]) -> dict:
    exact = [v["value"] for v in values if "value" in v]
    out: dict[str, Any] = {"per_seed": values}
    if len(exact) == len(values):
        out.update(mean=float(np.mean(exact)), min=float(np.min(exact)), max=float(np.max(exact)))
    return out


def smoothed_within(run_dir: Path, flops: float, window: int) -> float | None:
    """The run's accuracy, smoothed over ``window`` evaluations, at its last evaluation within
    ``flops`` of client compute; None before the first full window."""
    import edgefed.plots as plots

    curve = plots.read_curve(run_dir)
    within = [acc for spent, acc in zip(curve["client_flops"], smoothed(curve["accuracy"], window))
              if spent <= flops and acc is not None]
    return within[-1] if within else None


def equal_compute(theirs: tuple[Path, dict], ours: tuple[Path, dict]) -> dict:
    """Both runs' smoothed accuracy once each has spent the client compute of the cheaper whole
    run (each given as its run directory and summary): a fixed-budget view beside the fixed-target
    ratios, which one seed whose starting accuracy sits near the target can decide."""
    budget = min(summary["totals"]["client_flops"] for _, summary in (theirs, ours))
    a, b = (smoothed_within(run_dir, budget, summary["target_smoothing"]) for run_dir, summary in (theirs, ours))
    return {"budget_flops": budget, "theirs": a, "ours": b, "ours_minus_theirs": None if None in (a, b) else b - a}


def summary(plan: Plan) -> dict:
    import edgefed.plots as plots

    runs = report_runs(plan)
    target, gains = fix_target(plan, runs)
    table: dict[str, Any] = {}
    for method, run_dirs in runs.items():
        sums = [json.loads((r / "summary.json").read_text()) for r in run_dirs]
        table[method] = {
            "config": describe(run_algorithm(run_dirs[0]), plan), "seeds": [seed_of(r) for r in run_dirs],
            "initial_accuracy": [s["initial_accuracy"] for s in sums],
            "final_accuracy": [s["final_accuracy"] for s in sums],
            "final_smoothed_accuracy": [s["final_smoothed_accuracy"] for s in sums],
            **{f: [s[f] for s in sums] for f in (*FIGURES, "rounds_to_target")},
        }
    ratios, at_equal_compute = {}, {}
    if HEADLINE in runs:
        ours_dirs = {seed_of(r): r for r in runs[HEADLINE]}
        ours = {seed: json.loads((r / "summary.json").read_text()) for seed, r in ours_dirs.items()}
        for method, run_dirs in runs.items():
            if method == HEADLINE:
                continue
            theirs_dirs = {seed_of(r): r for r in run_dirs}
            theirs = {seed: json.loads((r / "summary.json").read_text()) for seed, r in theirs_dirs.items()}
            paired = sorted(set(ours) & set(theirs))
            ratios[f"{method}/{HEADLINE}"] = {f: spread([ratio(theirs[s], ours[s], f) for s in paired])
                                              for f in FIGURES}
            per_seed = [equal_compute((theirs_dirs[s], theirs[s]), (ours_dirs[s], ours[s])) for s in paired]
            gaps = [p["ours_minus_theirs"] for p in per_seed]
            at_equal_compute[f"{method}/{HEADLINE}"] = {
                "per_seed": per_seed, **({"mean_gap": float(np.mean(gaps)), "min_gap": float(np.min(gaps)),
                                          "max_gap": float(np.max(gaps))} if None not in gaps else {})}
    tuning = [{"method": o["algorithm"]["name"], **describe(o["algorithm"], plan),
               "final_smoothed_tuning_accuracy": s and s["final_smoothed_accuracy"]}
              for o, s in summaries(OUT / "tune")]
    groups = {m: run_dirs for m, run_dirs in runs.items()}
    for axis in ("flops", "time", "energy", "bytes"):
        plots.plot_overlay(groups, axis, OUT / "plots" / f"accuracy_vs_{axis}.png", target)
    figures = {"plan": yaml.safe_load(PLAN.read_text()), "tuning": tuning,
               "chosen": {m: describe(a, plan) for m, a in choose(plan).items()},
               "target": {"rule": f"initial + {plan.target.fraction_of_gain} x (final smoothed - initial) test "
                                  f"accuracy of {plan.target.reference_method}, means over its seeds",
                          "accuracy": target, "reference_gain_per_seed": gains},
               "methods": table, "ratios": ratios, "at_equal_compute": at_equal_compute, "device_classes": class_table(plan, target),
               "auto_picks": auto_picks(plan),
               "learning_ran_on": {stage: learning_hardware(OUT / stage) for stage in ("tune", "report")}}
    write_bench_result(RESULT, figures, __file__)
    print_table(table, ratios, at_equal_compute, target)
    return figures


def learning_hardware(folder: Path) -> dict:
    """Where a stage's learning ran (device, CPU, commit of each finished run, as its
    provenance.json records) and its host seconds summed over runs: the results are per kind of
    device, so a table must not mix kinds."""
    where: dict[str, int] = {}
    host = 0.0
    for point in load_sweep(folder / "sweep.yaml")[1]:
        if not is_complete(folder / point.id):
            continue
        host += json.loads((folder / point.id / "summary.json").read_text())["host_seconds"]
        p = json.loads((folder / point.id / "provenance.json").read_text())
        key = f"{p['learning_device']} | {p['machine']['cpu']} | commit {p['code']['commit']}"
        where[key] = where.get(key, 0) + 1
    return {"runs_by_device": where, "host_seconds": host}


def auto_picks(plan: Plan) -> dict:
    """What FedSPZO's ``split: auto`` / ``p2: auto`` plan for each device class's slowest device
    (the device that paces a round, as in a run)."""
    auto = next((c for c in plan.methods.get(HEADLINE, []) if "auto" in (c.get("split"), c.get("p2"))), None)
    if auto is None:
        return {}
    from edgefed.build import build_learning

    overrides = {**plan.regime.set, "algorithm": algorithm(plan, HEADLINE, auto, lrs(plan, HEADLINE)[0])}
    scenario, base = load_scenario(resolve_path(PLAN.parent, plan.regime.base),
                                   [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    algo = build_learning(scenario, base)
    devices, _ = scenario.fleet.profiles()
    dtype = scenario.model.dtype
    picks = {}
    for name, groups in plan.device_classes.items():
        slowest = min((g["device"] for g in groups), key=lambda d: devices[d].peak_flops(dtype))
        chosen = algo.plan_for(devices[slowest].peak_flops(dtype), devices[slowest].memory_bytes)
        picks[name] = {"device": slowest, "split": chosen.split, "p2": chosen.p2}
    return picks


def class_table(plan: Plan, target: float) -> dict:
    """Per device class: each method's simulated time and energy to the target per seed, and the
    method with the least mean of each among those that reached it on every seed."""
    folder = OUT / "classes"
    if not (folder / "sweep.yaml").is_file():
        return {}
    out: dict[str, dict] = {}
    names = {json.dumps(groups, sort_keys=True): name for name, groups in plan.device_classes.items()}
    _, points = load_sweep(folder / "sweep.yaml")
    for p in points:
        run_dir = folder / p.id
        if not is_complete(run_dir):
            continue
        s = retarget(run_dir, target)
        cls = names[json.dumps(p.overrides["fleet.groups"], sort_keys=True)]
        entry = out.setdefault(cls, {"methods": {}})["methods"].setdefault(
            p.overrides["algorithm"]["name"], {"time_to_target_s": [], "energy_to_target_j": []})
        entry["time_to_target_s"].append(s["time_to_target_s"])
        entry["energy_to_target_j"].append(s["energy_to_target_j"])
    for row in out.values():
        for figure in ("time_to_target_s", "energy_to_target_j"):
            # a method wins a class only if every seed reached the target there
            means = {m: float(np.mean(f[figure])) for m, f in row["methods"].items() if None not in f[figure]}
            row[f"least_{figure}"] = min(means, key=means.get) if means else None
    return out


def print_table(table: dict, ratios: dict, at_equal_compute: dict, target: float) -> None:
    print(f"\ntarget accuracy {target:.4f} (smoothed); per method over seeds: mean final accuracy, "
          "seeds reaching the target")
    for method, row in table.items():
        reached = sum(v is not None for v in row["client_flops_to_target"])
        print(f"  {method:9s} {np.mean(row['final_accuracy']):.4f}  {reached}/{len(row['seeds'])}  {row['config']}")
    for name, figs in ratios.items():
        cells = []
        for f, r in figs.items():
            cells.append(f"{f.split('_to_')[0]} " + (f"{r['mean']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]"
                                                     if "mean" in r else "bounds only"))
        print(f"  {name}: " + "; ".join(cells))
    for name, gap in at_equal_compute.items():
        if "mean_gap" in gap:
            print(f"  {name} at equal client compute: {HEADLINE} minus the other {gap['mean_gap']:+.4f} "
                  f"[{gap['min_gap']:+.4f}, {gap['max_gap']:+.4f}] smoothed accuracy")


def main() -> int:
    global PLAN, OUT, RESULT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["check", "tune", "report", "classes", "summary", "all"])
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel (each on its share of the threads)")
    parser.add_argument("--plan", type=Path, default=PLAN, help="another plan (a smoke test's)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the stages' sweeps and runs go")
    parser.add_argument("--result", type=Path, default=RESULT, help="the JSON written by `summary`")
    args = parser.parse_args()
    PLAN, OUT, RESULT = args.plan.resolve(), args.out.resolve(), args.result.resolve()
    plan = load_plan(PLAN)
    check(plan)
    if args.stage in ("tune", "all"):
        tune(plan, args.workers)
    if args.stage in ("report", "all"):
        report(plan, args.workers)
    if args.stage in ("classes", "all"):
        classes(plan)
    if args.stage in ("summary", "all"):
        summary(plan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
