"""Sweeps: a base scenario times a grid and/or list of dotted-path values.

A sweep file::

    base: ../quickstart.yaml           # relative to the sweep file
    set: {rounds.max: 5}               # fixed overrides for every point
    grid:                              # the product of these axes ...
      seed: [0, 1, 2]
      fleet.groups:                    # a mapping names its values (the label goes in sweep.csv)
        phones: [{device: pixel-7a, count: 8}]
        jetsons: [{device: jetson-orin-nano, count: 8}]
    points:                            # ... times each of these (default: one empty point)
      - {algorithm.lr: 0.001}
      - {algorithm.lr: 0.01}

Every point runs into ``OUT/<point id>``; the id hashes the point's parameters, so a point whose
run directory holds a finished ``summary.json`` is skipped and an interrupted sweep resumes: a
point stopped in the middle continues from its last round's checkpoint (as ``edgefed run
--resume``; its files equal an uninterrupted run's but for host seconds). The
points run on local processes or Ray tasks; either way ``sweep.csv`` joins each point's
parameters with its summary, in point order. A point that fails (bad input, diverged learning, a
crash) does not stop the others: its row gives the exit code ``edgefed run`` would have (2 bad
input, 1 runtime failure) and a one-line reason, and it runs again when the sweep is resumed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefed.parallel import start_ray, worker_threads
from edgefed.results import HOST_COLUMNS, atomic_write, csv_text, flatten
from edgefed.scenario import ScenarioError, load_scenario, load_yaml



class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base: str = Field(description="base scenario, relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value for every point")
    grid: dict[str, list | dict[str, Any]] = Field(default_factory=dict,
                                                   description="dotted path -> values (a list, or label -> value)")
    points: list[dict[str, Any]] = Field(default_factory=lambda: [{}], min_length=1)


class Point(BaseModel):
    """One scenario of the sweep: its overrides and how sweep.csv names them."""

    id: str
    overrides: dict[str, Any]
    labels: dict[str, Any]


def point_id(index: int, overrides: dict) -> str:
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    return f"p{index:03d}-{digest}"


def load_sweep(path: Path) -> tuple[Path, list[Point]]:
    """Read and expand a sweep file; every point is validated now, so a bad one fails before any runs."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read sweep: {str(exc).splitlines()[0]}") from None
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise ScenarioError(f"{path}: {where}: {err['msg']}") from None
    base = (path.resolve().parent / spec.base).resolve()
    axes = []
    for key, values in spec.grid.items():
        pairs = list(values.items()) if isinstance(values, dict) else [(v, v) for v in values]
        if not pairs:
            raise ScenarioError(f"{path}: grid.{key}: no values")
        axes.append([(key, label, value) for label, value in pairs])
    points = []
    for extra in spec.points:
        for combo in itertools.product(*axes):
            overrides = {**spec.set, **{k: v for k, _, v in combo}, **extra}
            labels = {**{k: label for k, label, _ in combo}, **extra}
            points.append(Point(id=point_id(len(points), overrides), overrides=overrides, labels=labels))
    for point in points:
        point_scenario(base, point.overrides)
    return base, points


def point_scenario(base: Path, overrides: dict):
    """The point's scenario: the base with its overrides (JSON is YAML, so values keep their type);
    no report.html unless the sweep asks for one (``edgefed report`` makes one of the whole sweep)."""
    return load_scenario(base, ["output.report=false", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())])


def is_complete(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "done"


def failure(exit_code: int, exc: BaseException) -> dict:
    """How a point failed, as its sweep.csv row tells it."""
    reason = str(exc).strip().splitlines()
    return {"failed": {"exit_code": exit_code, "reason": reason[0] if reason else type(exc).__name__}}


def run_point(base: str, overrides: dict, run_dir: str, pause: int | None = None, record: dict | None = None,
              threads: int | None = None) -> dict:
    """Run one point (in a worker process or Ray task); returns its summary, or ``failure``'s
    answer when it cannot finish. ``pause`` and ``record``: ``run_scenario``'s (a comparison's
    halving pause, and what its provenance.json records of the comparison)."""
    import torch

    from edgefed.simulator.engine import Diverged
    from edgefed.runner import has_own_checkpoint, run_scenario

    if threads:
        torch.set_num_threads(threads)
    try:
        scenario, folder = point_scenario(Path(base), overrides)
        return run_scenario(scenario, folder, Path(run_dir), resume=has_own_checkpoint(Path(run_dir), scenario),
                            pause=pause, record=record)
    except ScenarioError as exc:
        return failure(2, exc)
    except Diverged as exc:
        return failure(1, exc)
    except Exception as exc:  # a crash of this point; the others go on
        return failure(1, RuntimeError(f"{type(exc).__name__}: {exc}"))


def sweep_rows(out: Path, points: list[Point], failed: dict[str, dict] | None = None) -> tuple[list[str], list[dict]]:
    """Each finished point's parameters joined with its summary (host-dependent fields left out),
    and each point of ``failed`` (id -> exit code and reason) with its status ``failed``."""
    failed = failed or {}
    param_cols = list(dict.fromkeys(k for p in points for k in p.labels))
    rows, summary_cols = [], {}
    for point in points:
        run_dir = out / point.id
        params = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)
                  for k, v in point.labels.items()}
        if point.id in failed:
            rows.append({"point": point.id, "run_dir": point.id, **params, "status": "failed", **failed[point.id]})
            continue
        if not is_complete(run_dir):
            continue
        summary = {k: v for k, v in flatten(json.loads((run_dir / "summary.json").read_text())).items()
                   if k not in HOST_COLUMNS}
        summary_cols.update(dict.fromkeys(summary))
        rows.append({"point": point.id, "run_dir": point.id, **params, **summary, "exit_code": 0})
    return ["point", "run_dir", *param_cols, *summary_cols, "exit_code", "reason"], rows


def run_sweep(file: Path, out: Path, backend: Literal["local", "ray"] = "local", workers: int = 1,
              on_done=None) -> dict:
    """Run the sweep's missing points; write ``out/sweep.csv``. Returns which points ran, which
    were skipped and which failed (id -> exit code and reason)."""
    base, points = load_sweep(file)
    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in points if not is_complete(out / p.id)]
    jobs = [Job(str(base), p.overrides, str(out / p.id)) for p in todo]
    failed: dict[str, dict] = {}

    def done(job: Job, result: dict) -> None:
        point_id = Path(job.run_dir).name
        if "failed" in result:
            failed[point_id] = result["failed"]
        elif on_done:
            on_done(point_id, result)

    run_jobs(jobs, backend, workers, done)
    columns, rows = sweep_rows(out, points, failed)
    atomic_write(out / "sweep.csv", csv_text(columns, rows))
    return {"ran": [p.id for p in todo], "skipped": [p.id for p in points if p not in todo],
            "failed": failed, "points": len(points), "csv": out / "sweep.csv"}


class Job(NamedTuple):
    """One point to run: ``run_point``'s arguments."""

    base: str
    overrides: dict
    run_dir: str
    pause: int | None = None
    record: dict | None = None


def run_jobs(jobs: list[Job], backend: Literal["local", "ray"], workers: int, on_done) -> None:
    """Run ``jobs`` on local processes or Ray tasks, calling ``on_done(job, result)`` as each ends
    (``result``: its summary, or ``failure``'s answer): the one runner of sweeps and comparisons."""
    if jobs:
        (run_ray if backend == "ray" else run_local)(jobs, workers, on_done)


def run_local(jobs: list[Job], workers: int, on_done) -> None:
    """One worker: the points in turn in this process. More: spawned worker processes (a fresh
    interpreter each, so nothing a point sets up leaks into another's process), each point
    reported as it finishes (a sweep cut short by a time limit shows what it got)."""
    if workers == 1:
        for job in jobs:
            on_done(job, run_point(*job))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_point, *job, worker_threads(workers)): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool as exc:  # its worker died (killed, out of memory)
                result = failure(1, RuntimeError(f"worker process died: {exc}"))
            on_done(job, result)


def run_ray(jobs: list[Job], workers: int, on_done) -> None:
    """Ray tasks: on the cluster named by ``RAY_ADDRESS`` if set, else a local Ray with ``workers`` CPUs.
    Cluster nodes need edgefed installed and the scenario's data at the same paths."""
    ray, started = start_ray(workers, "--backend ray")
    try:
        task = ray.remote(num_cpus=1)(run_point)
        refs = [task.remote(*job, 1) for job in jobs]
        for job, ref in zip(jobs, refs):
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # its worker or node died
                result = failure(1, RuntimeError(f"Ray task failed: {type(exc).__name__}"))
            on_done(job, result)
    finally:
        if started:
            ray.shutdown()
