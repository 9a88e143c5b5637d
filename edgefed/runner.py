"""Drive a built run to its run directory: one round loop for real runs and replay, with the writer,
the learning trace, checkpoints and progress as observers of the engine's rounds."""
from __future__ import annotations

import gc
import time
from pathlib import Path

from edgefed.budget import CostBudget
from edgefed.build import build_run, device_name, learning_device
from edgefed.checkpoint import CHECKPOINT, CheckpointError, Checkpointer, checkpoint_state, load_checkpoint, \
    remove_checkpoint
from edgefed.simulator.engine import Diverged, RoundObserver
from edgefed.provenance import PROVENANCE, versions, write_run_provenance
from edgefed.replay import TRACE, TraceRecorder
from edgefed.results import REPORT, RunWriter
from edgefed.scenario import Scenario, ScenarioError, pinned_paths, scenario_dict
from edgefed.tensorboard_log import TensorBoardLog

RUN_FILES = ("scenario.yaml", "rounds.csv", "clients.csv", "summary.json", TRACE, PROVENANCE, CHECKPOINT, REPORT)


def default_run_dir(scenario: Scenario) -> Path:
    """Where a run goes when no folder is named: ``output.dir/name`` (relative to the working folder)."""
    return Path(scenario.output.dir) / scenario.name


def prepare_run_dir(run_dir: Path) -> None:
    """Refuse to write into a folder that is not an edgefed run; clear an old run's files."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise ScenarioError(f"{run_dir}: output path exists and is not a folder")
        contents = [p.name for p in run_dir.iterdir()]
        if contents and "scenario.yaml" not in contents:
            raise ScenarioError(f"{run_dir}: output folder is not empty and holds no edgefed run")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def device_kind(scenario: Scenario) -> str | None:
    """The kind of device whose generator will draw the run's directions (``cpu`` or ``cuda``);
    None for a replay, which draws none."""
    return None if scenario.replay is not None else learning_device(scenario.model.device).type


def refuse_other(run_dir: Path, state: dict, resolved: dict, kind: str | None) -> None:
    """Refuse a checkpoint unless this same scenario made it on the same kind of device (a CUDA
    generator draws other directions than a CPU one: a run continued on the other kind would
    match neither's results)."""
    if state["scenario"] != resolved:
        raise ScenarioError(f"{run_dir / CHECKPOINT}: made by a different scenario "
                            "(resume with the same file and --set values)")
    made_on = state.get("device_kind")
    if made_on is not None and made_on != kind:
        raise ScenarioError(f"{run_dir / CHECKPOINT}: made on {made_on}, this run's model is on {kind} "
                            f"(directions differ per kind of device: resume where it ran, or set model.device)")


def has_own_checkpoint(run_dir: Path, scenario: Scenario) -> bool:
    """Whether ``run_dir`` holds a readable checkpoint that this scenario can continue (same
    scenario, same kind of device): a sweep resumes such a point where it stopped (anything else
    there is an old run to start over). Reads the checkpoint's state only, not its tensors."""
    try:
        refuse_other(run_dir, checkpoint_state(run_dir), scenario_dict(scenario), device_kind(scenario))
    except (CheckpointError, ScenarioError):
        return False
    return True


def run_scenario(scenario: Scenario, base: Path, run_dir: Path, progress: RoundObserver | None = None,
                 resume: bool = False, pause: int | None = None, record: dict | None = None) -> dict:
    """Run every round, writing the run directory and a checkpoint as it goes; returns the summary.
    With ``resume``, continue from the run directory's last checkpoint instead. A scenario with
    ``replay`` drives only the systems side from a recorded trace. ``pause`` (with
    ``rounds.budget``): stop at that evaluation slot instead, keeping the checkpoint to continue
    from (summary status ``paused``). ``record``: more for provenance.json to record (a comparison's plan)."""
    wall_start = time.perf_counter()
    resolved, kind = scenario_dict(scenario), device_kind(scenario)
    ckpt = open_run_dir(run_dir, resolved, kind, resume)
    run = build_run(scenario, base)  # feature caches keep the process's threads for their fills
    if scenario.host.threads is not None and not run.replay:  # a replay runs no torch
        import torch

        torch.set_num_threads(scenario.host.threads)
    engine = run.engine
    if scenario.rounds.budget is not None:
        engine.schedule = CostBudget.of(scenario.rounds, pause)
    elif pause is not None:
        raise ScenarioError("pause: only for a run with rounds.budget")
    writer = RunWriter(run_dir, edge_tier=scenario.rounds.aggregation.kind == "hierarchical",
                       asynchronous=scenario.rounds.mode == "async",
                       edge_rounds=scenario.rounds.aggregation.edge_rounds,
                       tuning=scenario.task.evaluate_on == "both", topology=engine.cfg.topology)
    ran_on = None if run.replay else device_name(next(engine.algo.model.parameters()).device)
    writer.write_scenario(pinned_paths(resolved, base), {**versions(), **({"device": ran_on} if ran_on else {})})
    write_run_provenance(run_dir, scenario, base, None if run.replay else engine.algo.model.backbone, ran_on, record)
    checkpointer = Checkpointer(run_dir, resolved, run.excluded,
                                started=wall_start - (ckpt.state["host_seconds"] if ckpt else 0.0),
                                device_kind=kind)
    resumed_at = None
    if ckpt is not None:
        ckpt.restore(engine)
        resumed_at = engine.round
        writer.resume(resumed_at)
    engine.observers = [writer]
    if not run.replay:
        if scenario.rounds.mode == "sync":  # an asynchronous run cannot be replayed (scenario.py says why)
            engine.observers.append(TraceRecorder(run_dir, engine.algo.peak_memory_bytes(), resumed_at))
        from edgefed.parallel import client_pool  # torch: the learning's workers

        engine.pool = client_pool(scenario.host, scenario, base)
    engine.observers += [checkpointer] + ([progress] if progress else [])
    if scenario.output.tensorboard:
        engine.observers.append(TensorBoardLog(run_dir, fresh=ckpt is None))
    summary = play(engine, ckpt is None, writer, checkpointer, scenario, run.excluded)
    if summary["status"] == "paused":
        return summary  # its checkpoint is what it continues from
    remove_checkpoint(run_dir)  # finished: nothing left to resume
    if scenario.output.plots:
        from edgefed.plots import plot_run_dir
        plot_run_dir(run_dir)
    if scenario.output.report:
        from edgefed.report import write_report
        write_report([run_dir], run_dir / REPORT)
    return summary


def open_run_dir(run_dir: Path, resolved: dict, kind: str | None, resume: bool):
    """The checkpoint to resume from (None: a fresh run, the folder prepared for it); what a kill in
    the middle of an atomic write left is removed either way."""
    ckpt = None
    if resume:
        try:
            ckpt = load_checkpoint(run_dir)
        except CheckpointError as exc:
            raise ScenarioError(str(exc)) from None
        refuse_other(run_dir, ckpt.state, resolved, kind)
    if ckpt is None:
        prepare_run_dir(run_dir)
    for stale in run_dir.glob(".*.tmp"):
        stale.unlink()
    return ckpt


def play(engine, fresh: bool, writer: RunWriter, checkpointer: Checkpointer, scenario: Scenario, excluded) -> dict:
    """Run the rounds; whatever ends them, close the observers and write the summary with the
    status (``done``, ``interrupted``, ``diverged``, ``failed``); returns it."""
    status = "done"
    gc.freeze()  # long-lived objects (torch, the model, a trace) need no rescanning every round
    try:
        engine.run(start_round=engine.round + 1, initial=fresh)
        if getattr(engine.schedule, "paused", False):
            status = "paused"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Diverged:
        status = "diverged"
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        gc.unfreeze()
        for observer in engine.observers:
            observer.close(engine, status)
        if engine.pool is not None:
            engine.pool.close()
        summary = writer.summary(scenario.rounds.target_accuracy, scenario.rounds.target_smoothing, excluded,
                                 checkpointer.host_seconds(), status)
        writer.write_summary(summary)
    return summary
