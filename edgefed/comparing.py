"""``edgefed compare``: a comparison's runs in three stages on the sweep runner (docs/compare.md).

1. Pruning: every configuration of every arm runs on the first tuning seed to a third of the
   budget (paused there, its checkpoint kept) and is scored over (2/9, 1/3] of the budget.
2. Survivors: the best ``survivors(n)`` of each arm continue to the full budget (the first seed's
   run resumes from its pause) and run on the other tuning seeds; each arm's pick is the best by
   the score over the last third of the budget, averaged over tuning seeds. No configuration is
   ever picked on less than the full budget.
3. Report: every pick on every report seed, to the full budget.

Runs are sweep points (``edgefed.sweep.run_jobs``): on local processes or Ray, a failed run is
recorded without stopping the others, and a rerun skips what finished and resumes what stopped.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from edgefed.checkpoint import remove_checkpoint
from edgefed.comparison import CompareFailed, Comparison, Run, point_scenario
from edgefed.outcomes import totals
from edgefed.protocol import Candidate, check_target, mean_score, rank, read_curve, score, survivors
from edgefed.registration import check_code, code_version, register
from edgefed.results import atomic_write, peak_memory
from edgefed.scenario import ScenarioError

#: the score windows, as fractions of the budget: pruning's last third of a third, and the last third
PRUNING_WINDOW = (2 / 9, 1 / 3)
FINAL_WINDOW = (2 / 3, 1.0)
COMPARE_JSON, SUMMARY_MD, REPORT_HTML, FAILED_JSON = "compare.json", "summary.md", "report.html", "failed.json"


@dataclass
class Stages:
    """Where a comparison got to: its runs' failures and the tuning table as it fills."""

    comparison: Comparison
    out: Path
    plan: dict
    backend: Literal["local", "ray"] = "local"
    workers: int = 1
    on_run: Callable[[str, Run, dict], None] | None = None  # (stage, run, summary or failure) as each ends
    on_stage: Callable[[str, int], None] | None = None  # (stage, runs to go) as each begins
    failed: dict[str, dict] = field(default_factory=dict)

    def run_dir(self, run: Run) -> Path:
        return self.out / run.folder

    def execute(self, stage: str, runs: list[Run], pause: int | None = None) -> None:
        """Run what of ``runs`` has not finished this stage (paused at ``pause``, or done)."""
        from edgefed.sweep import Job, run_jobs

        todo = [r for r in runs if not finished(self.run_dir(r), pause)]
        if self.on_stage:
            self.on_stage(stage, len(todo))
        record = {"comparison": {"name": self.comparison.spec.name, "plan_sha256": self.plan["plan_sha256"]}}
        by_dir = {str(self.run_dir(r)): r for r in todo}

        def done(job, result: dict) -> None:
            run = by_dir[job.run_dir]
            if "failed" in result and status(self.run_dir(run)) != "diverged":  # divergence is a result
                self.failed[run.folder] = {"stage": stage, **result["failed"]}
            if self.on_run:
                self.on_run(stage, run, result)

        run_jobs([Job(str(self.comparison.base), r.overrides, str(self.run_dir(r)), pause, record) for r in todo],
                 self.backend, self.workers, done)


def status(run_dir: Path) -> str | None:
    """A run's summary status (None before it wrote one)."""
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def finished(run_dir: Path, pause: int | None) -> bool:
    """Whether a run has done its stage: finished, diverged (the same again on a rerun), or
    (``pause``) paused at its slot."""
    return status(run_dir) in ("done", "diverged", *(("paused",) if pause is not None else ()))


def usable(stages: Stages, run: Run) -> bool:
    """Whether a run has figures to score: it ran, and neither failed nor diverged."""
    return run.folder not in stages.failed and status(stages.run_dir(run)) not in (None, "diverged")


def seed_scores(stages: Stages, runs: list[Run], window: tuple[float, float]) -> dict[int, float | None]:
    """Each run's score over ``window``, by seed: None when it is not ``usable`` or has no
    evaluation there."""
    spec = stages.comparison.spec
    return {run.seed: score(read_curve(stages.run_dir(run), spec.cost, spec.budget, spec.evaluations),
                            spec.budget, spec.smoothing, *window) if usable(stages, run) else None
            for run in runs}


def candidate(stages: Stages, runs: list[Run], scores: dict[int, float | None]) -> Candidate:
    """One configuration's candidate from its runs' ``seed_scores``: their mean (None unless every
    run has one), its peak memory and its mean bytes (what ties break on; unknown, so last, when a
    run is not usable)."""
    if not all(usable(stages, r) for r in runs):
        return Candidate(runs[0].config, None, math.inf, math.inf)
    return Candidate(runs[0].config, mean_score(list(scores.values())), peak_memory(stages.run_dir(runs[0])),
                     sum(totals(stages.run_dir(r))["bytes"] for r in runs) / len(runs))


def scored(stages: Stages, runs: list[Run], window: tuple[float, float]) -> Candidate:
    """One configuration's candidate over ``window`` (rules 2 and 3)."""
    return candidate(stages, runs, seed_scores(stages, runs, window))


def tune(stages: Stages) -> dict[str, dict]:
    """Stages 1 and 2: each arm's tuning table and pick."""
    comparison, spec = stages.comparison, stages.comparison.spec
    first, others = spec.tuning.seeds[0], spec.tuning.seeds[1:]
    configs = {label: range(len(sections)) for label, sections in comparison.algorithms.items()}
    pruning = {label: [comparison.run(label, c, first) for c in cs] for label, cs in configs.items()}
    stages.execute("pruning", [r for runs in pruning.values() for r in runs], pause=comparison.pause)
    table = {}
    for label, runs in pruning.items():
        early = [scored(stages, [r], PRUNING_WINDOW) for r in runs]
        kept = sorted(c.index for c in rank(early)[:survivors(len(runs))])
        table[label] = {"rows": [{"config": c.index, "algorithm": comparison.algorithms[label][c.index],
                                  "pruning_score": c.score, "survived": c.index in kept} for c in early],
                        "survivors": kept}
        for run in runs:  # a pruned configuration never continues: its checkpoint goes
            if run.config not in kept:
                remove_checkpoint(stages.run_dir(run))
    tuning_runs = {label: {c: [comparison.run(label, c, s) for s in (first, *others)] for c in t["survivors"]}
                   for label, t in table.items()}
    stages.execute("survivors", [r for by in tuning_runs.values() for runs in by.values() for r in runs])
    for label, by_config in tuning_runs.items():
        final = []
        for runs in by_config.values():
            scores = seed_scores(stages, runs, FINAL_WINDOW)
            c = candidate(stages, runs, scores)
            table[label]["rows"][c.index].update({"score": c.score, "peak_memory_bytes": c.peak_memory,
                                                  "bytes": c.bytes,
                                                  "scores": {str(seed): v for seed, v in scores.items()}})
            final.append(c)
        best = rank(final)[0]
        if best.score is None:
            raise CompareFailed(f"arms.{label}: no configuration has a score at the full budget "
                                f"(see {stages.out / FAILED_JSON})")
        table[label]["pick"] = best.index
    return table


def report(stages: Stages, table: dict[str, dict]) -> dict[str, dict[int, Path]]:
    """Stage 3: each pick on every report seed; their run folders by arm and seed."""
    comparison = stages.comparison
    runs = {label: [comparison.run(label, t["pick"], s) for s in comparison.spec.seeds] for label, t in table.items()}
    stages.execute("report", [r for rs in runs.values() for r in rs])
    return {label: {r.seed: stages.run_dir(r) for r in rs} for label, rs in runs.items()}


def initial_accuracies(comparison: Comparison, seeds: list[int]) -> dict[str, float]:
    """Each report seed's round-0 test accuracy (rule 4: every arm starts from it), to check
    targets against before any run."""
    from edgefed.build import build_learning

    out = {}
    for seed in seeds:
        scenario, folder = point_scenario(comparison.base,
                                          comparison.run(comparison.spec.reference, 0, seed).overrides)
        out[str(seed)] = build_learning(scenario, folder).evaluate()[0]
    return out


def checked_starts(comparison: Comparison, seeds: list[int]) -> dict[str, float]:
    """Rule 6's check before a seed is registered: every target above its starting accuracy."""
    starts = initial_accuracies(comparison, seeds)
    for target in comparison.spec.targets:
        try:
            check_target(target, {int(s): a for s, a in starts.items()})
        except ValueError as exc:
            raise ScenarioError(f"{comparison.path}: targets: {exc}") from None
    return starts


def compare(comparison: Comparison, out: Path, backend: Literal["local", "ray"] = "local", workers: int = 1,
            on_run=None, on_stage=None) -> dict:
    """Run (or continue) a comparison into ``out``; returns compare.json's figures."""
    from edgefed.outcomes import analyse, summary_markdown
    from edgefed.provenance import code
    from edgefed.report import comparison_html

    spec = comparison.spec
    out.mkdir(parents=True, exist_ok=True)
    plan = register(comparison, out, starts=(lambda seeds: checked_starts(comparison, seeds))
                    if spec.targets else None)
    check_code(plan, spec.code_versions, code_version(code()))
    stages = Stages(comparison, out, plan, backend, workers, on_run, on_stage)
    try:
        table = tune(stages)
        runs = report(stages, table)
        if stages.failed:
            raise CompareFailed(f"{len(stages.failed)} run(s) failed, e.g. {next(iter(stages.failed))}: "
                                f"{next(iter(stages.failed.values()))['reason']} (all in {out / FAILED_JSON}; "
                                "a rerun retries them)")
    except CompareFailed:
        atomic_write(out / FAILED_JSON, json.dumps(stages.failed, indent=2, sort_keys=True) + "\n")
        raise
    (out / FAILED_JSON).unlink(missing_ok=True)
    result = analyse(comparison, plan, table, runs, out)
    atomic_write(out / COMPARE_JSON, json.dumps(result, indent=2, allow_nan=False) + "\n")
    atomic_write(out / SUMMARY_MD, summary_markdown(result))
    atomic_write(out / REPORT_HTML, comparison_html(result))
    return result


def default_out(comparison: Comparison) -> Path:
    return Path("runs") / comparison.spec.name

