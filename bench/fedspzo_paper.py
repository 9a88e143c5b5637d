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

A plan with `version: 2` (bench/fedspzo_paper_v2.yaml, issue 33: the same stages with `--plan`;
runs under bench/results/fedspzo_paper_v2/, the JSON beside them) fixes a client-FLOPs budget B
instead of rounds: each configuration is scored by its smoothed tuning accuracy at its last
evaluation within B; methods go by labels, so DeComFL and its control (DeComFL training
FedSPZO's block 2 only) are told apart; the report runs all spend one client-FLOPs budget and
`report` gzips each finished run's trace.jsonl to trace.jsonl.gz, to be committed. `summary`
refuses report runs (and new tuning runs) that learned on different kinds of machine and gives
the FLOPs ratio as a curve over targets, per seed, with its min-max and a t-interval
(bench/fedspzo_ratio.py).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from edgefed.algorithms.registry import METHODS
from edgefed.provenance import write_bench_result
from edgefed.results import atomic_write, retarget, smoothed
from edgefed.scenario import ScenarioError, load_scenario, resolve_path
from edgefed.sweep import is_complete, load_sweep, point_id, run_sweep

if str(Path(__file__).resolve().parent) not in sys.path:  # the sibling module, also when imported from a test
    sys.path.append(str(Path(__file__).resolve().parent))
import fedspzo_ratio as fr  # noqa: E402
from fedspzo_ratio import FIGURES, ratio, spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "bench" / "fedspzo_paper.yaml"
OUT = REPO / "bench" / "results" / "fedspzo_paper"
RESULT = REPO / "bench" / "results" / "fedspzo_paper.json"
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


# --- plan version 2 (issue 33) --------------------------------------------------------------------

class Budget(Strict):
    client_flops: PositiveFloat = Field(description="B: every tuning configuration is read at it")
    evaluations: PositiveInt = Field(8, description="each configuration evaluated at least every B/evaluations")
    slack: float = Field(0.05, ge=0.0, le=0.25, description="how far an evaluation gap may pass that (per-round "
                         "FLOPs vary with the batches)")


class Config(BaseModel):
    """One configuration: its tuning rounds and evaluation cadence; every other key is an
    algorithm field for this configuration alone (the method's own axis, or a shared setting such
    as ``trainable``, which then replaces the regime's)."""
    model_config = ConfigDict(extra="allow")
    rounds: PositiveInt
    eval_every: PositiveInt

    @property
    def overrides(self) -> dict:
        return dict(self.model_extra or {})


class Arm(Strict):
    method: str | None = Field(None, description="the algorithm (default: the label)")
    configs: list[Config] = Field(min_length=1)
    also_next_best_if: dict[str, Any] = Field(default_factory=dict, description="when the best configuration "
                                              "has these values (the grid's edge), report the next best too")


class TuningV2(Strict):
    seeds: list[int] = Field(min_length=1)
    tuning_split: PositiveInt
    smoothing: PositiveInt
    reuse: str | None = Field(None, description="a finished tuning stage (relative to the plan) whose runs of "
                              "the same point count here when they pass the budget's checks")
    levels: list[float] = Field(default_factory=list, description="tuning accuracies whose client FLOPs "
                                "to reach them are reported (a sensitivity view, not the rule)")


class ReportV2(Strict):
    seeds: list[int] = Field(min_length=1)
    client_flops: PositiveFloat = Field(description="what every report run spends")
    evaluations: PositiveInt = Field(description="each report run evaluated at least every client_flops/evaluations")
    smoothing: PositiveInt
    margin: float = Field(0.05, ge=0.0, le=0.5, description="rounds beyond the tuning run's mean FLOPs per round")


class TargetV2(Strict):
    reference: str = Field(description="a label: its (first) report pick fixes the targets")
    fraction_of_gain: PositiveFloat = Field(le=1.0, description="the single target, marked on the curve")
    curve: list[PositiveFloat] = Field(min_length=1, description="fractions f: targets initial + f x mean gain")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)


class PlanV2(Strict):
    version: Literal[2]
    regime: Regime
    budget: Budget
    lr_grid: list[PositiveFloat] = Field(min_length=1, description="one grid for every method")
    methods: dict[str, Arm] = Field(description="label -> method and its configurations")
    tuning: TuningV2
    report: ReportV2
    target: TargetV2
    device_classes: dict[str, list[dict[str, Any]]]

    @model_validator(mode="after")
    def _labels(self) -> "PlanV2":
        for label, arm in self.methods.items():
            arm.method = arm.method or label
        return self


def fail(message: str) -> None:
    print(f"fedspzo_paper: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_plan(path: Path) -> Plan | PlanV2:
    try:
        raw = yaml.safe_load(path.read_text())
        return (PlanV2 if isinstance(raw, dict) and "version" in raw else Plan).model_validate(raw)
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


def lrs(plan: Plan | PlanV2, method: str) -> list[float]:
    if isinstance(plan, PlanV2):
        return plan.lr_grid
    return plan.lr_grid["first_order" if method == "fedavg" else "zero_order"]


def configs_of(plan: Plan | PlanV2, method: str) -> list[dict]:
    """The algorithm fields of every configuration the plan gives ``method`` (under any label)."""
    if isinstance(plan, PlanV2):
        return [c.overrides for arm in plan.methods.values() if arm.method == method for c in arm.configs]
    return plan.methods.get(method, [])


def stage_set(plan: Plan | PlanV2, stage, evaluate_on: str) -> dict:
    """A stage's settings for every point (a v2 plan's points carry their own rounds and cadence)."""
    held = plan.tuning.tuning_split  # held out in both stages: the same training data
    cadence = {"rounds.max": stage.rounds, "rounds.eval_every": stage.eval_every} if isinstance(stage, Stage) else {}
    return {**{k: v for k, v in plan.regime.set.items() if not k.startswith("algorithm.")}, **cadence,
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


def check(plan: Plan | PlanV2) -> None:
    """Every bad input, before any run: unknown methods, a configuration the method refuses, a
    FedSPZO split outside the layers or with a block that has nothing to perturb, missing data."""
    if isinstance(plan, PlanV2):
        return check_v2(plan)
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
    check_splits(plan)


def check_splits(plan: Plan | PlanV2) -> None:
    """Each FedSPZO split inside the model's layers, with something trainable in both blocks."""
    splits = [c["split"] for c in configs_of(plan, HEADLINE) if c.get("split", "auto") != "auto"]
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


def run_stage(sweep: Path, workers: int, after=None) -> None:
    """Run a stage's sweep; ``after(run_dir)`` for each point as it finishes."""
    def done(pid: str, s: dict) -> None:
        print(f"  {pid}: final {s['final_accuracy']:.4f}", flush=True)
        if after:
            after(sweep.parent / pid)

    result = run_sweep(sweep, sweep.parent, workers=workers, on_done=done)
    for pid, why in result["failed"].items():
        print(f"  {pid}: FAILED ({why['reason']})", flush=True)
    print(f"{sweep.parent.name}: {len(result['ran'])} ran, {len(result['skipped'])} already done, "
          f"{len(result['failed'])} failed", flush=True)


def tune(plan: Plan | PlanV2, workers: int) -> None:
    if isinstance(plan, PlanV2):
        entries = tuning_entries(plan)
        reused = sum(e.reused for e in entries)
        if reused:
            print(f"tune: {reused} of {len(entries)} tuning runs read from {plan.tuning.reuse} (they pass the "
                  "budget's checks)", flush=True)
        if reused < len(entries):
            run_stage(OUT / "tune" / "sweep.yaml", workers)  # written by check_v2: the points not reused
        return
    run_stage(write_sweep(OUT / "tune", plan, plan.tuning, "tuning", tuning_points(plan)), workers)


def report(plan: Plan | PlanV2, workers: int) -> None:
    if isinstance(plan, PlanV2):
        return report_v2(plan, workers)
    chosen = choose(plan)
    order = [plan.target.reference_method] + [m for m in plan.methods if m != plan.target.reference_method]
    run_stage(write_sweep(OUT / "report", plan, plan.report, "test", [{"algorithm": chosen[m]} for m in order]),
              workers)


def report_runs(plan: Plan | PlanV2, picks: dict | None = None) -> dict[str, list[Path]]:
    """Each method's (v2: each pick's) finished report run directories, by seed order."""
    _, points = load_sweep(OUT / "report" / "sweep.yaml")
    if isinstance(plan, PlanV2):
        picks = picks or choose_v2(plan)
        by_algorithm = {json.dumps(pick.algorithm, sort_keys=True): name for name, pick in picks.items()}
    runs: dict[str, list[Path]] = {}
    for p in points:
        if is_complete(OUT / "report" / p.id):
            name = (by_algorithm.get(json.dumps(p.overrides["algorithm"], sort_keys=True))
                    if isinstance(plan, PlanV2) else p.overrides["algorithm"]["name"])
            if name is not None:  # (v2) a run of a pick no longer made is left out
                runs.setdefault(name, []).append(OUT / "report" / p.id)
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


def classes(plan: Plan | PlanV2) -> None:
    """Replay every report run's learning trace on each single-class fleet (no learning); a v2
    report run's trace is unpacked from its trace.jsonl.gz, and each replay takes the run's rounds."""
    def cadence(run_dir: Path) -> dict:
        if not isinstance(plan, PlanV2):
            return {}
        rounds = yaml.safe_load((run_dir / "scenario.yaml").read_text())["rounds"]
        return {"rounds.max": rounds["max"], "rounds.eval_every": rounds["eval_every"]}

    traces = OUT / "classes" / "traces"  # (v2) unpacked for the replays, removed after them
    points = [{"replay": {"trace": str(fr.unpacked_trace(run_dir, traces) if isinstance(plan, PlanV2)
                                       else run_dir / "trace.jsonl")},
               "algorithm": run_algorithm(run_dir), "seed": seed_of(run_dir), "fleet.groups": groups,
               **cadence(run_dir)}
              for run_dirs in report_runs(plan).values() for run_dir in run_dirs
              for groups in plan.device_classes.values()]
    sweep = write_sweep(OUT / "classes", plan, plan.report, "test", points, seeds=False)
    current = {p.id for p in load_sweep(sweep)[1]}
    for old in sweep.parent.glob("p[0-9]*"):  # a replay of a run no longer reported (ids follow positions)
        if old.name not in current:
            shutil.rmtree(old)
    run_stage(sweep, 1)
    shutil.rmtree(traces, ignore_errors=True)


def run_algorithm(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "scenario.yaml").read_text())["algorithm"]


def initial_of(run_dir: Path) -> float:
    """The run's accuracy before training (round 0), as its summary.json records it."""
    return json.loads((run_dir / "summary.json").read_text())["initial_accuracy"]


def seed_of(run_dir: Path) -> int:
    return yaml.safe_load((run_dir / "scenario.yaml").read_text())["seed"]


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


def summary(plan: Plan | PlanV2) -> dict:
    import edgefed.plots as plots

    if isinstance(plan, PlanV2):
        return summary_v2(plan)
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
               "learning_ran_on": {stage: learning_hardware(finished_runs(OUT / stage))
                                   for stage in ("tune", "report")}}
    write_bench_result(RESULT, figures, __file__)
    print_table(table, ratios, at_equal_compute, target)
    return figures


# --- version 2 (issue 33): tuning at a client-FLOPs budget, picks by label, ratio curves -------------

CADENCE = ("rounds.max", "rounds.eval_every")


@dataclass
class Entry:
    """One tuning point of a v2 plan: its label, configuration and lr, the sweep point, and the
    run that answers for it (in this plan's tune stage, or an earlier stage's run reused)."""
    label: str
    config: int  # index into the label's configurations
    algorithm: dict
    seed: int
    point: dict
    run_dir: Path
    reused: bool


@dataclass
class Pick:
    """What the report stage runs for one name: the label's best (or next best) configuration."""
    label: str
    config: dict
    algorithm: dict
    score: float
    tuning_runs: list[Path]


def reusable(plan: PlanV2) -> dict[str, Path]:
    """The earlier tuning stage's finished runs by what they ran (their overrides less rounds and
    cadence, and the base scenario), when ``tuning.reuse`` names one."""
    if plan.tuning.reuse is None:
        return {}
    folder = resolve_path(PLAN.parent, plan.tuning.reuse)
    if not (folder / "sweep.yaml").is_file():
        fail(f"tuning.reuse: {folder}: no sweep.yaml there")
    base, points = load_sweep(folder / "sweep.yaml")
    return {reuse_key(base, p.overrides): folder / p.id for p in points if is_complete(folder / p.id)}


def reuse_key(base: Path, overrides: dict) -> str:
    return json.dumps([str(base), {k: v for k, v in overrides.items() if k not in CADENCE}], sort_keys=True)


@functools.cache
def _entries(plan_json: str, plan_path: Path, out: Path) -> tuple[Entry, ...]:
    plan = PlanV2.model_validate_json(plan_json)
    shared = stage_set(plan, plan.tuning, "tuning")
    base = resolve_path(plan_path.parent, plan.regime.base).resolve()
    earlier = reusable(plan)
    entries, new = [], 0
    for label, arm in plan.methods.items():
        for index, config in enumerate(arm.configs):
            for lr in plan.lr_grid:
                algo = algorithm(plan, arm.method, config.overrides, lr)
                for seed in plan.tuning.seeds:
                    point = {"algorithm": algo, "seed": seed, "rounds.max": config.rounds,
                             "rounds.eval_every": config.eval_every}
                    old = earlier.get(reuse_key(base, {**shared, **point}))
                    if old is not None and fr.at_budget(old, plan.budget.client_flops, plan.tuning.smoothing,
                                                        plan.budget.evaluations, plan.budget.slack)["ok"]:
                        entries.append(Entry(label, index, algo, seed, point, old, True))
                        continue
                    run_dir = out / "tune" / point_id(new, {**shared, **point})
                    entries.append(Entry(label, index, algo, seed, point, run_dir, False))
                    new += 1
    return tuple(entries)


def tuning_entries(plan: PlanV2) -> tuple[Entry, ...]:
    """Every (label, configuration, lr, seed) of the tuning stage, in plan order; the points not
    answered by a reused run are the tune sweep's, in this order (so their folders are known)."""
    return _entries(plan.model_dump_json(), PLAN, OUT)


def check_v2(plan: PlanV2) -> None:
    unknown = sorted({arm.method for arm in plan.methods.values()} - set(METHODS))
    if unknown:
        fail(f"methods: unknown method {unknown[0]!r} (known: {', '.join(METHODS)})")
    for label in (plan.target.reference, HEADLINE):
        if label not in plan.methods:
            fail(f"methods: no label {label!r} (the {'reference' if label == plan.target.reference else 'headline'})")
    for label, arm in plan.methods.items():
        for key in arm.also_next_best_if:
            if not any(key in c.overrides for c in arm.configs):
                fail(f"methods.{label}.also_next_best_if: no configuration sets {key!r}")
    for f in plan.target.curve:
        if f > 1.0:
            fail(f"target.curve: fraction {f} is above 1 (the reference's whole gain)")
    new = [e.point for e in tuning_entries(plan) if not e.reused]
    if new:  # (all reused: no tune sweep)
        try:
            load_sweep(write_sweep(OUT / "tune", plan, plan.tuning, "tuning", new, seeds=False))
        except ScenarioError as exc:
            fail(str(exc))
    check_splits(plan)


def describe_v2(plan: PlanV2, label: str, index: int, lr: float) -> dict:
    return {"lr": lr, **plan.methods[label].configs[index].overrides}


def tuning_scores(plan: PlanV2) -> list[dict]:
    """Each (label, configuration, lr): its runs' readings at the budget and their mean score.
    Refuses (one line) a tuning stage with an unfinished run, or a run whose reading does not
    count (it spent less than B, or was evaluated too seldom)."""
    entries = tuning_entries(plan)
    unfinished = [e for e in entries if not is_complete(e.run_dir)]
    if unfinished:
        fail(f"tune stage unfinished: {len(unfinished)} of {len(entries)} tuning runs have no summary "
             f"({', '.join(sorted({e.label for e in unfinished}))}); run `tune` first")
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.label, e.config, e.algorithm["lr"]), []).append(e)
    rows = []
    for (label, index, lr), group in groups.items():
        readings = []
        for e in group:
            r = fr.at_budget(e.run_dir, plan.budget.client_flops, plan.tuning.smoothing, plan.budget.evaluations,
                             plan.budget.slack)
            if not r["ok"]:
                fail(f"tuning run {os.path.relpath(e.run_dir, OUT)} ({label} "
                     f"{describe_v2(plan, label, index, lr)}): {r['why']}")
            readings.append(r)
        rows.append({"label": label, "method": plan.methods[label].method, **describe_v2(plan, label, index, lr),
                     "score_at_budget": float(np.mean([r["smoothed"] for r in readings])),
                     "read_at_round": [r["round"] for r in readings],
                     "read_at_client_flops": [r["client_flops"] for r in readings],
                     "client_flops_per_round": float(np.mean([fr.per_round(e.run_dir) for e in group])),
                     "runs": [os.path.relpath(e.run_dir, OUT) for e in group], "reused": [e.reused for e in group],
                     "client_flops_to_level": fr.flops_to_levels([e.run_dir for e in group], plan.tuning.levels,
                                                                 plan.budget.client_flops, plan.tuning.smoothing),
                     "_config": index, "_runs": [e.run_dir for e in group],
                     "_algorithm": group[0].algorithm})
    return rows


def choose_v2(plan: PlanV2, rows: list[dict] | None = None) -> dict[str, Pick]:
    """Per label the (configuration, lr) with the best score at the budget (ties: the smaller lr,
    then the earlier configuration); where the best has the values of ``also_next_best_if`` (the
    grid's edge) also the best of the other configurations, named ``<label>-next``. The
    reference's picks come first. ``rows``: ``tuning_scores``, when already read."""
    rows = rows or tuning_scores(plan)
    picks: dict[str, Pick] = {}
    for label, arm in plan.methods.items():
        mine = [r for r in rows if r["label"] == label]
        key = lambda r: (r["score_at_budget"], -r["lr"])  # noqa: E731
        best = max(mine, key=key)  # the first of equals, in plan order
        chosen = [(label, best)]
        config = arm.configs[best["_config"]].overrides
        edge = arm.also_next_best_if
        if edge and all(config.get(k) == v for k, v in edge.items()):
            others = [r for r in mine if not all(arm.configs[r["_config"]].overrides.get(k) == v
                                                 for k, v in edge.items())]
            if others:
                chosen.append((f"{label}-next", max(others, key=key)))
        for name, row in chosen:
            picks[name] = Pick(label, describe_v2(plan, label, row["_config"], row["lr"]), row["_algorithm"],
                               row["score_at_budget"], row["_runs"])
    return {**{k: v for k, v in picks.items() if v.label == plan.target.reference}, **picks}


def report_v2(plan: PlanV2, workers: int) -> None:
    picks = choose_v2(plan)
    points = [{"algorithm": pick.algorithm,
               **fr.report_cadence(float(np.mean([fr.per_round(r) for r in pick.tuning_runs])),
                                   plan.report.client_flops, plan.report.evaluations, plan.report.margin)}
              for pick in picks.values()]
    for (name, pick), point in zip(picks.items(), points):
        print(f"report: {name} {pick.config} (score {pick.score:.4f}): {point['rounds.max']} rounds, "
              f"evaluated every {point['rounds.eval_every']}", flush=True)
    sweep = write_sweep(OUT / "report", plan, plan.report, "test", points)
    run_stage(sweep, workers, after=fr.gzip_trace)
    for p in load_sweep(sweep)[1]:  # runs finished before a cut-short stage could pack them
        if is_complete(OUT / "report" / p.id):
            fr.gzip_trace(OUT / "report" / p.id)


def summary_v2(plan: PlanV2) -> dict:
    import edgefed.plots as plots

    rows = tuning_scores(plan)
    picks = choose_v2(plan, rows)
    runs = report_runs(plan, picks)
    seeds = plan.report.seeds
    for name in picks:
        if len(runs.get(name, [])) < len(seeds):
            fail(f"report stage unfinished: {len(runs.get(name, []))} of {len(seeds)} {name} seeds "
                 "(run `report` first)")
    extra = post_hoc_runs(seeds)
    machines = {os.path.relpath(r, OUT): fr.machine(r) for rs in (*runs.values(), *extra.values()) for r in rs}
    machines.update({os.path.relpath(e.run_dir, OUT): fr.machine(e.run_dir)
                     for e in tuning_entries(plan) if not e.reused})
    mixed = fr.mixed_kinds(machines)
    if mixed:
        fail(f"the comparison's runs learned on different kinds of machine ({mixed}): run them all on one kind")
    budget, window = plan.report.client_flops, plan.report.smoothing
    readings = {}
    for name, run_dirs in (*runs.items(), *extra.items()):
        for r in run_dirs:
            readings[r] = fr.at_budget(r, budget, window, plan.report.evaluations, plan.budget.slack)
            if not readings[r]["ok"]:
                fail(f"report run {os.path.relpath(r, OUT)} ({name}): {readings[r]['why']}")
    # the target rule of v1, on the reference's report runs alone, read at the report budget
    reference = runs[plan.target.reference]
    initial = float(np.mean([initial_of(r) for r in reference]))
    gains = [readings[r]["smoothed"] - initial_of(r) for r in reference]
    gain = float(np.mean(gains))
    target = initial + plan.target.fraction_of_gain * gain
    for run_dirs in runs.values():
        for r in run_dirs:
            retarget(r, target)
    print(f"target {target:.4f}: {plan.target.reference} from {initial:.4f}, mean gain {gain:+.4f} within "
          f"{budget / 1e12:.4g} TFLOP (per seed {', '.join(f'{g:+.4f}' for g in gains)})"
          + ("; it did not learn: every target is at or below its initial accuracy" if gain <= 0 else ""), flush=True)
    table = {name: {"label": picks[name].label, "method": picks[name].algorithm["name"], "config": picks[name].config,
                    "tuning_score": picks[name].score, "seeds": [seed_of(r) for r in run_dirs],
                    **fr.runs_table(run_dirs, readings, budget, target, window),
                    "runs": [os.path.relpath(r, OUT) for r in run_dirs],
                    "machine": [machines[os.path.relpath(r, OUT)] for r in run_dirs]}
             for name, run_dirs in runs.items()}
    by_seed = {name: {seed_of(r): r for r in run_dirs} for name, run_dirs in runs.items()}
    curves, ratios, at_budget = fr.compare(by_seed, HEADLINE, readings, initial, gain, target, plan.target, budget,
                                           window)
    for pair, curve in curves.items():
        fr.plot_ratio_curve(curve, pair, OUT / "plots" / f"ratio_vs_fraction_{pair.split('/')[0]}.png")
    for axis in ("flops", "time", "energy", "bytes"):
        plots.plot_overlay(runs, axis, OUT / "plots" / f"accuracy_vs_{axis}.png", target)
    label_of = {r.name: name for name, rs in runs.items() for r in rs}
    post_hoc = peak_comparison(plan, runs, extra, readings, initial, label_of)
    tuning = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    commits = sorted({m["commit"] or "unknown" for m in machines.values()})
    figures = {
        "plan": yaml.safe_load(PLAN.read_text()),
        "budget": {"client_flops": plan.budget.client_flops,
                   "evaluated_at_least_every": plan.budget.client_flops / plan.budget.evaluations,
                   "rule": "each configuration's smoothed tuning accuracy at its last evaluation within the budget, "
                           "mean over tuning seeds; per label the best (ties: the smaller lr)"},
        "tuning": tuning, "sensitivity": fr.sensitivity(list(plan.methods), plan.tuning.levels, tuning),
        "chosen": {name: {"label": p.label, **p.config, "score_at_budget": p.score} for name, p in picks.items()},
        "report_budget": {"client_flops": budget, "evaluated_at_least_every": budget / plan.report.evaluations},
        "target": {"rule": f"initial + {plan.target.fraction_of_gain} x (smoothed accuracy within the report budget "
                           f"- initial) test accuracy of {plan.target.reference}, means over its seeds",
                   "accuracy": target, "initial": initial, "mean_gain": gain, "reference_gain_per_seed": gains},
        "methods": table, "ratio_curve": curves, "ratios": ratios, "at_budget": at_budget, "post_hoc": post_hoc,
        "systems_figures": {"commits": commits, "note": "time, energy and bytes are the simulator's figures at these "
                            "commits; each report run's trace.jsonl.gz replays them under later models",
                            "device_classes_replayed_at": sorted(
                                {fr.machine(r)["commit"] or "unknown" for r in finished_runs(OUT / "classes")}
                                if (OUT / "classes" / "sweep.yaml").is_file() else [])},
        "machines": {"kinds": sorted({m["kind"] for m in machines.values()}), "commits": commits,
                     "tuning_reused": sorted(os.path.relpath(e.run_dir, OUT)
                                             for e in tuning_entries(plan) if e.reused)},
        "device_classes": class_table(plan, target, label_of),
        "auto_picks": auto_picks(plan),
        "learning_ran_on": {
            "tune (new runs)": learning_hardware([e.run_dir for e in tuning_entries(plan) if not e.reused]),
            "tune (read from an earlier stage)": learning_hardware([e.run_dir for e in tuning_entries(plan)
                                                                    if e.reused]),
            "report": learning_hardware([r for rs in runs.values() for r in rs]),
            "post hoc": learning_hardware([r for rs in extra.values() for r in rs])},
    }
    write_bench_result(RESULT, figures, __file__)
    fr.print_summary(table, curves, at_budget, target, commits, HEADLINE)
    return figures


def finished_runs(folder: Path) -> list[Path]:
    """A stage's finished run directories, in sweep order."""
    return [folder / point.id for point in load_sweep(folder / "sweep.yaml")[1] if is_complete(folder / point.id)]


def post_hoc_runs(seeds: list[int]) -> dict[str, list[Path]]:
    """Runs added after the plan's (OUT/posthoc/sweep.yaml, an ``edgefed sweep`` of report-stage
    points): each point's finished runs over the report seeds, named by method and lr."""
    sweep = OUT / "posthoc" / "sweep.yaml"
    if not sweep.is_file():
        return {}
    found: dict[str, list[Path]] = {}
    for run in finished_runs(sweep.parent):
        algo = run_algorithm(run)
        found.setdefault(f"{algo['name']}-lr{algo['lr']:g}", []).append(run)
    return {name: sorted(rs, key=seed_of) for name, rs in found.items() if sorted(map(seed_of, rs)) == sorted(seeds)}


def peak_comparison(plan: PlanV2, runs: dict[str, list[Path]], extra: dict[str, list[Path]], readings: dict,
                    initial: float, label_of: dict[str, str]) -> dict:
    """Post hoc, outside the plan: the ratio curves again with the reference's gain measured at its
    best smoothed accuracy within the report budget instead of its last (the plan's rule gives no
    target when the reference ends below where it began), every pick and the post-hoc runs against
    FedSPZO."""
    budget, window = plan.report.client_flops, plan.report.smoothing
    reference = runs[plan.target.reference]
    gains = [fr.peak(r, budget, window) - initial_of(r)
             for r in reference]
    gain = float(np.mean(gains))
    target = initial + plan.target.fraction_of_gain * gain
    every = {**runs, **extra}
    by_seed = {name: {seed_of(r): r for r in run_dirs} for name, run_dirs in every.items()}
    curves, _, at_budget = fr.compare(by_seed, HEADLINE, readings, initial, gain, target, plan.target, budget, window)
    for pair, curve in curves.items():
        fr.plot_ratio_curve(curve, f"{pair} (post hoc: peak gain)",
                            OUT / "plots" / f"post_hoc_ratio_vs_fraction_{pair.split('/')[0]}.png")
    return {"rule": f"initial + f x (best smoothed accuracy within the report budget - initial) test accuracy of "
                    f"{plan.target.reference}, means over its seeds (post hoc)",
            "target": {"accuracy": target, "initial": initial, "mean_gain": gain, "reference_gain_per_seed": gains},
            "runs": {name: {"config": run_algorithm(rs[0]),
                            "seeds": [seed_of(r) for r in rs],
                            **fr.runs_table(rs, readings, budget, target, window),
                            "runs": [os.path.relpath(r, OUT) for r in rs]} for name, rs in extra.items()},
            "ratio_curve": curves, "at_budget": at_budget, "device_classes": class_table(plan, target, label_of)}


def learning_hardware(run_dirs: list[Path]) -> dict:
    """Where runs' learning ran (device, CPU, commit of each, as its provenance.json records) and
    their host seconds summed: the results are per kind of device, so a table must not mix kinds."""
    where: dict[str, int] = {}
    host = 0.0
    for run in run_dirs:
        host += json.loads((run / "summary.json").read_text())["host_seconds"]
        p = json.loads((run / "provenance.json").read_text())
        key = f"{p['learning_device']} | {p['machine']['cpu']} | commit {p['code']['commit']}"
        where[key] = where.get(key, 0) + 1
    return {"runs_by_device": where, "host_seconds": host}


def auto_picks(plan: Plan) -> dict:
    """What FedSPZO's ``split: auto`` / ``p2: auto`` plan for each device class's slowest device
    (the device that paces a round, as in a run)."""
    auto = next((c for c in configs_of(plan, HEADLINE) if "auto" in (c.get("split"), c.get("p2"))), None)
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


def class_table(plan: Plan | PlanV2, target: float, label_of: dict[str, str] | None = None) -> dict:
    """Per device class: each method's (``label_of``: report run's point id -> name) simulated time and
    energy to the target per seed, and the one with the least mean of each among those that
    reached it on every seed."""
    folder = OUT / "classes"
    if not (folder / "sweep.yaml").is_file():
        return {}
    label_of = label_of or {}
    out: dict[str, dict] = {}
    names = {json.dumps(groups, sort_keys=True): name for name, groups in plan.device_classes.items()}
    _, points = load_sweep(folder / "sweep.yaml")
    for p in points:
        run_dir = folder / p.id
        if not is_complete(run_dir):
            continue
        s = retarget(run_dir, target)
        cls = names[json.dumps(p.overrides["fleet.groups"], sort_keys=True)]
        name = label_of.get(Path(p.overrides["replay"]["trace"]).stem, p.overrides["algorithm"]["name"])
        entry = out.setdefault(cls, {"methods": {}})["methods"].setdefault(
            name, {"time_to_target_s": [], "energy_to_target_j": []})
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
    parser.add_argument("--plan", type=Path, default=PLAN, help="another plan (v2: bench/fedspzo_paper_v2.yaml)")
    parser.add_argument("--out", type=Path, help="where the stages' sweeps and runs go "
                        "(default: bench/results/ and the plan's name)")
    parser.add_argument("--result", type=Path, help="the JSON written by `summary` (default: bench/results/ "
                        "and the plan's name, .json)")
    args = parser.parse_args()
    PLAN = args.plan.resolve()
    OUT = (args.out or REPO / "bench" / "results" / PLAN.stem).resolve()
    RESULT = (args.result or REPO / "bench" / "results" / f"{PLAN.stem}.json").resolve()
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
