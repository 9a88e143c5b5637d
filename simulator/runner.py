"""Assemble a run from a scenario (data, model, algorithm, fleet) and drive it to a run directory."""
from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

import torch

from algorithms.base import FederatedData, evaluate, init_prototype_head
from algorithms.data import DataError, Tokenized, load_dataset, partition
from algorithms.decomfl import DeComFL
from algorithms.models import ModelLoadError, TaskModel, load_backbone
from simulator.costs import fits_in_memory
from simulator.engine import Client, Engine, RoundRecord
from simulator.parallel import client_pool
from simulator.replay import TraceRecorder
from simulator.results import RunWriter, summarize
from simulator.scenario import Scenario, ScenarioError, resolve_path, scenario_dict

ALGORITHMS = {"decomfl": DeComFL}
RUN_FILES = ("scenario.yaml", "rounds.csv", "clients.csv", "summary.json", "trace.json")


def build_fleet(scenario: Scenario) -> list[Client]:
    devices, links = scenario.fleet.profiles()
    clients = []
    for group in scenario.fleet.groups:
        device = devices[group.device]
        link = links[group.link or device.default_link]
        for _ in range(group.count):
            clients.append(Client(len(clients), group.device, device, link))
    return clients


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
    train_tok = Tokenized(train, tokenizer, spec.max_length, scenario.task.prompt)
    test_tok = Tokenized(test, tokenizer, spec.max_length, scenario.task.prompt)
    init_prototype_head(model, train_tok, train.labels, scenario.task.head_init_examples, scenario.seed)
    data = FederatedData(train_tok, parts, test_tok)
    try:
        return ALGORITHMS[scenario.algorithm.name](model, data, scenario.algorithm, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(f"algorithm.trainable: {exc}") from None


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


def run_scenario(scenario: Scenario, base: Path, run_dir: Path, progress=None) -> dict:
    """Run every round, writing the run directory as it goes; returns the summary."""
    if scenario.replay is not None:
        from simulator.replay import run_replay
        return run_replay(scenario, base, run_dir, progress)
    wall_start = time.perf_counter()
    prepare_run_dir(run_dir)
    writer = RunWriter(run_dir)
    writer.write_scenario(scenario_dict(scenario), versions())
    algorithm = TraceRecorder(build_learning(scenario, base))
    clients = build_fleet(scenario)
    excluded = mark_memory_exclusions(clients, algorithm.peak_memory_bytes())
    if not any(c.eligible for c in clients):
        need = algorithm.peak_memory_bytes() / 1e9
        raise ScenarioError(f"fleet: no device can hold this method's peak memory ({need:.2f} GB)")
    engine = Engine(algorithm, clients, scenario.rounds, scenario.seed, scenario.model.dtype)
    engine.pool = client_pool(scenario.host, scenario, base)
    accuracy, loss = evaluate(algorithm.model, algorithm.data.test)
    initial = RoundRecord(0, 0.0, accuracy, loss, 0, 0, 0, 0, 0, 0.0, 0.0, time.perf_counter() - wall_start)
    writer.add_round(initial, engine.excluded_records())
    algorithm.record(initial, {})
    writer.flush()
    if progress:
        progress.start(scenario.rounds.max, accuracy)

    def on_round(record, rows):
        writer.add_round(record, rows)
        writer.flush()
        algorithm.record(record, engine.updates)
        if progress:
            progress.advance(record)

    status = "done"
    try:
        engine.run(on_round)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if progress:
            progress.stop()
        if engine.pool is not None:
            engine.pool.close()
        algorithm.write(run_dir / "trace.json")
        summary = summarize(writer.rounds, writer.clients, scenario.rounds.target_accuracy, excluded,
                            time.perf_counter() - wall_start, status)
        writer.write_summary(summary)
    if scenario.output.plots:
        from simulator.plots import plot_run_dir
        plot_run_dir(run_dir)
    return summary
