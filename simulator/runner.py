"""Assemble a run from a scenario (data, model, algorithm, fleet) and drive it to a run directory."""
from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

import torch

from edgefed.algorithms.base import FederatedData, evaluate, init_prototype_head
from edgefed.algorithms.data import DataError, Tokenized, load_dataset, partition
from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.fedavg import FedAvg
from edgefed.algorithms.fedkseed import FedKSeed
from edgefed.algorithms.fedspzo import FedSPZO
from edgefed.algorithms.fedzo import FedZO
from edgefed.algorithms.models import ModelLoadError, TaskModel, load_backbone
from edgefed.devices.availability import DEFAULT_DAILY_TRACE, Availability, daily_windows, read_daily_trace, read_trace
from edgefed.simulator.checkpoint import CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint, remove_checkpoint, save_checkpoint
from edgefed.simulator.costs import fits_in_memory
from edgefed.simulator.engine import Client, Diverged, Engine, RoundRecord
from edgefed.simulator.network import link_factors, read_link_trace
from edgefed.simulator.parallel import client_pool
from edgefed.simulator.replay import TraceRecorder
from edgefed.simulator.results import RunWriter, summarize
from edgefed.simulator.scenario import Scenario, ScenarioError, resolve_path, scenario_dict

ALGORITHMS = {"decomfl": DeComFL, "fedspzo": FedSPZO, "fedkseed": FedKSeed, "fedzo": FedZO, "fedavg": FedAvg}
RUN_FILES = ("scenario.yaml", "rounds.csv", "clients.csv", "summary.json", "trace.json", CHECKPOINT)


def build_fleet(scenario: Scenario, base: Path = Path(".")) -> list[Client]:
    """One client per device, its link's bandwidth scaled by the fleet's per-device variability."""
    devices, links = scenario.fleet.profiles()
    variability = scenario.fleet.network.variability
    factors = link_factors(scenario.fleet.size, variability, scenario.seed)
    trace = {}
    if variability.kind == "trace":
        try:
            trace = read_link_trace(resolve_path(base, variability.file))
        except ValueError as exc:
            raise ScenarioError(f"fleet.network.variability.file: {exc}") from None
    clients = []
    for group in scenario.fleet.groups:
        device = devices[group.device]
        link = links[scenario.fleet.link_name(group)]
        for _ in range(group.count):
            cid = len(clients)
            up, down = trace.get(cid, (float(link.up_mbps * factors[cid, 0]), float(link.down_mbps * factors[cid, 1])))
            own = link if (up, down) == (link.up_mbps, link.down_mbps) else link.model_copy(
                update={"up_mbps": up, "down_mbps": down})
            clients.append(Client(cid, group.device, device, own, cell=group.cell))
    return clients


def build_availability(scenario: Scenario, base: Path) -> Availability:
    spec = scenario.fleet.availability
    trace = daily = None
    try:
        if spec.kind == "trace":
            trace = read_trace(resolve_path(base, spec.file))
        elif spec.kind == "charging_wifi":
            users = read_daily_trace(resolve_path(base, spec.file) if spec.file else DEFAULT_DAILY_TRACE)
            devices, _ = scenario.fleet.profiles()
            on_battery = [devices[g.device].battery_wh is not None for g in scenario.fleet.groups for _ in range(g.count)]
            daily = daily_windows(users, on_battery, spec, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(f"fleet.availability.file: {exc}") from None
    return Availability(spec, scenario.fleet.size, scenario.seed, trace, daily)


def build_learning(scenario: Scenario, base: Path):
    """Load data and model, partition, align the head; returns the algorithm."""
    ds = scenario.task.dataset
    try:
        train = load_dataset(resolve_path(base, ds.train), ds.text_field, ds.label_field, ds.format,
                             scenario.task.label_names, ds.train_limit)
        test = load_dataset(resolve_path(base, ds.test), ds.text_field, ds.label_field, ds.format,
                            train.label_names, ds.test_limit)
        parts = partition(train.labels, scenario.fleet.size, scenario.partition.kind, scenario.seed,
                          scenario.partition.alpha, scenario.partition.shards_per_client)
    except DataError as exc:
        raise ScenarioError(str(exc)) from None
    torch.manual_seed(scenario.seed)
    spec = scenario.model
    try:
        backbone, tokenizer, kind = load_backbone(spec.name, spec.kind, spec.dtype, scenario.seed)
        model = TaskModel(backbone, tokenizer, kind, len(train.label_names), scenario.task.label_words,
                          scenario.task.prompt)
    except ModelLoadError as exc:
        raise ScenarioError(str(exc)) from None
    positions = getattr(backbone.config, "max_position_embeddings", None)
    if positions is not None and spec.max_length > positions:
        raise ScenarioError(f"model.max_length: {spec.max_length} exceeds the model's {positions} positions")
    train_tok = Tokenized(train, tokenizer, spec.max_length, scenario.task.prompt)
    test_tok = Tokenized(test, tokenizer, spec.max_length, scenario.task.prompt)
    try:
        init_prototype_head(model, train_tok, train.labels, scenario.task.head_init_examples, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(f"{resolve_path(base, ds.train)}: {exc}") from None
    data = FederatedData(train_tok, parts, test_tok)
    try:
        return ALGORITHMS[scenario.algorithm.name](model, data, scenario.algorithm, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(str(exc) if str(exc).startswith("algorithm.") else f"algorithm.trainable: {exc}") from None


def fit_to_fleet(algorithm, scenario: Scenario) -> None:
    """Let a method with a per-device plan (FedSPZO's ``auto`` split/p2) fit its chosen device:
    ``algorithm.auto_device``, else the fleet's slowest, which sets the round's pace."""
    if not hasattr(algorithm, "fit_device"):
        return
    devices, _ = scenario.fleet.profiles()
    dtype = scenario.model.dtype
    name = scenario.algorithm.auto_device or min((g.device for g in scenario.fleet.groups),
                                                 key=lambda d: devices[d].peak_flops(dtype))
    if name not in devices:
        raise ScenarioError(f"algorithm.auto_device: unknown device {name!r}")
    try:
        algorithm.fit_device(devices[name].peak_flops(dtype), devices[name].memory_bytes)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None


def mark_memory_exclusions(clients: list[Client], peak_bytes: int) -> list[dict]:
    """Devices that cannot hold the method's peak memory never take part; report them."""
    excluded: dict[str, dict] = {}
    for c in clients:
        if not fits_in_memory(peak_bytes, c.device):
            c.eligible = False
            c.note = f"needs {peak_bytes / 1e9:.2f} GB, has {c.device.memory_bytes / 1e9:.2f} GB"
            entry = excluded.setdefault(c.device_name, {"device": c.device_name, "count": 0,
                                                         "needs_bytes": peak_bytes,
                                                         "usable_bytes": c.device.memory_bytes})
            entry["count"] += 1
    return list(excluded.values())


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
