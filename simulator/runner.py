"""Drive a built run to its run directory."""
from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

import torch

from edgefed.algorithms.base import evaluate
from edgefed.simulator.build import build_availability, build_fleet, build_learning, fit_to_fleet, mark_memory_exclusions
from edgefed.simulator.checkpoint import CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint, remove_checkpoint, save_checkpoint
from edgefed.simulator.engine import Diverged, Engine, RoundRecord
from edgefed.simulator.parallel import client_pool
from edgefed.simulator.replay import TraceRecorder
from edgefed.simulator.results import RunWriter, summarize
from edgefed.simulator.scenario import Scenario, ScenarioError, scenario_dict

RUN_FILES = ("scenario.yaml", "rounds.csv", "clients.csv", "summary.json", "trace.json", CHECKPOINT)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("edgefed", "torch", "transformers", "simpy", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


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


def checkpoint(run_dir: Path, resolved: dict, engine: Engine, writer: RunWriter, excluded: list[dict],
               host_seconds: float) -> None:
    algo = engine.algo
    state = {"scenario": resolved, "engine": engine.state(), "rounds": writer.rounds, "clients": writer.clients,
             "excluded": excluded, "host_seconds": host_seconds, "trace": algo.trace, "applied": algo.applied}
    save_checkpoint(run_dir, state, dict(zip(algo.trainable.names, algo.trainable.params)), algo.state())


def open_checkpoint(run_dir: Path, resolved: dict) -> Checkpoint:
    """The run directory's last checkpoint, refused unless this same scenario made it."""
    try:
        ckpt = load_checkpoint(run_dir)
    except CheckpointError as exc:
        raise ScenarioError(str(exc)) from None
    if ckpt.state["scenario"] != resolved:
        raise ScenarioError(f"{run_dir / CHECKPOINT}: made by a different scenario "
                            "(resume with the same file and --set values)")
    return ckpt


def resume_from(ckpt: Checkpoint, engine: Engine, writer: RunWriter) -> float:
    """Restore a run from its checkpoint; returns the host seconds spent before it."""
    trainable = engine.algo.trainable
    trainable.restore([ckpt.params[name] for name in trainable.names])
    engine.algo.load_state(ckpt.algorithm)
    engine.load_state(ckpt.state["engine"])
    torch.set_rng_state(ckpt.torch_rng)
    writer.rounds, writer.clients = ckpt.state["rounds"], ckpt.state["clients"]
    engine.algo.trace, engine.algo.applied = ckpt.state["trace"], ckpt.state["applied"]
    writer.flush()
    return ckpt.state["host_seconds"]


def run_scenario(scenario: Scenario, base: Path, run_dir: Path, progress=None, resume: bool = False) -> dict:
    """Run every round, writing the run directory and a checkpoint as it goes; returns the summary.
    With ``resume``, continue from the run directory's last checkpoint instead. A scenario with
    ``replay`` drives only the systems side from a recorded trace."""
    if scenario.replay is not None:
        if resume:
            raise ScenarioError("--resume: replay runs are quick to redo; run them again instead")
        from edgefed.simulator.replay import run_replay
        return run_replay(scenario, base, run_dir, progress)
    wall_start = time.perf_counter()
    resolved = scenario_dict(scenario)
    if resume:
        ckpt = open_checkpoint(run_dir, resolved)
    else:
        prepare_run_dir(run_dir)
    for stale in run_dir.glob(".*.tmp"):  # what a kill in the middle of an atomic write leaves
        stale.unlink()
    writer = RunWriter(run_dir)
    writer.write_scenario(resolved, versions())
    learning = build_learning(scenario, base)
    fit_to_fleet(learning, scenario)
    algorithm = TraceRecorder(learning)
    clients = build_fleet(scenario, base)
    excluded = mark_memory_exclusions(clients, algorithm.peak_memory_bytes())
    if not any(c.eligible for c in clients):
        need = algorithm.peak_memory_bytes() / 1e9
        raise ScenarioError(f"fleet: no device can hold this method's peak memory ({need:.2f} GB)")
    engine = Engine(algorithm, clients, scenario.rounds, scenario.seed, scenario.model.dtype, scenario.fleet,
                    build_availability(scenario, base))
    engine.pool = client_pool(scenario.host, scenario, base)
    host_before = 0.0
    if resume:
        host_before = resume_from(ckpt, engine, writer)
    else:
        accuracy, loss = evaluate(algorithm.model, algorithm.data.test)
        initial = RoundRecord(0, 0.0, accuracy, loss, 0, 0, 0, 0, 0, 0.0, 0.0, time.perf_counter() - wall_start)
        writer.add_round(initial, engine.excluded_records())
        algorithm.record(initial, {})
        writer.flush()
        checkpoint(run_dir, resolved, engine, writer, excluded, time.perf_counter() - wall_start)
    if progress:
        progress.start(scenario.rounds.max - engine.round, writer.rounds[0]["accuracy"])

    def on_round(record, rows):
        writer.add_round(record, rows)
        writer.flush()
        algorithm.record(record, engine.updates)
        checkpoint(run_dir, resolved, engine, writer, excluded, host_before + time.perf_counter() - wall_start)
        if progress:
            progress.advance(record)

    status = "done"
    try:
        engine.run(on_round, start_round=engine.round + 1)
    except (KeyboardInterrupt, Diverged) as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "diverged"
        raise
    finally:
        if progress:
            progress.stop()
        if engine.pool is not None:
            engine.pool.close()
        algorithm.write(run_dir / "trace.json")
        summary = summarize(writer.rounds, writer.clients, scenario.rounds.target_accuracy, excluded,
                            host_before + time.perf_counter() - wall_start, status)
        writer.write_summary(summary)
    remove_checkpoint(run_dir)  # finished: nothing left to resume
    if scenario.output.plots:
        from edgefed.simulator.plots import plot_run_dir
        plot_run_dir(run_dir)
    return summary
