"""Building a run from a scenario: data, model and algorithm, the fleet, its availability.

Builders only construct; they import nothing that drives a run (``runner``, ``replay``,
``parallel`` import them, never the reverse), so the package has no import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from edgefed.algorithms.base import FederatedData, init_prototype_head
from edgefed.algorithms.data import DataError, Tokenized, load_dataset, partition
from edgefed.algorithms.fedspzo import FedSPZOSpec
from edgefed.algorithms.models import ModelLoadError, TaskModel, load_backbone
from edgefed.algorithms.registry import METHODS
from edgefed.devices.availability import DEFAULT_DAILY_TRACE, Availability, daily_windows, read_daily_trace, read_trace
from edgefed.simulator.costs import fits_in_memory
from edgefed.simulator.engine import Client, Engine
from edgefed.simulator.network import link_factors, read_link_trace
from edgefed.simulator.replay import ReplayAlgorithm, load_trace
from edgefed.simulator.scenario import Scenario, ScenarioError, resolve_path

@dataclass
class Run:
    """A run ready to drive: the engine (holding the algorithm and the fleet) and who was left out."""

    engine: Engine
    excluded: list[dict]  # per device kind that cannot hold the method: count, needed and usable bytes

    @property
    def replay(self) -> bool:
        return isinstance(self.engine.algo, ReplayAlgorithm)


def build_run(scenario: Scenario, base: Path) -> Run:
    """The learning (or, with ``replay``, the recorded trace standing in for it), the fleet with its
    memory exclusions and availability, and the engine over them."""
    if scenario.replay is not None:
        trace = load_trace(resolve_path(base, scenario.replay.trace))
        if scenario.rounds.max > len(trace["updates"]):
            raise ScenarioError(f"rounds.max: {scenario.rounds.max} exceeds the {len(trace['updates'])} rounds "
                                "in replay.trace")
        algorithm = ReplayAlgorithm(trace)
    else:
        algorithm = build_learning(scenario, base)
        fit_to_fleet(algorithm, scenario)
    clients = build_fleet(scenario, base)
    excluded = mark_memory_exclusions(clients, algorithm.peak_memory_bytes())
    if not any(c.eligible for c in clients):
        need = algorithm.peak_memory_bytes() / 1e9
        raise ScenarioError(f"fleet: no device can hold this method's peak memory ({need:.2f} GB)")
    engine = Engine(algorithm, clients, scenario.rounds, scenario.seed, scenario.model.dtype, scenario.fleet,
                    build_availability(scenario, base))
    return Run(engine, excluded)


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
        return METHODS[scenario.algorithm.name](model, data, scenario.algorithm, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(str(exc) if str(exc).startswith("algorithm.") else f"algorithm.trainable: {exc}") from None


def fit_to_fleet(algorithm, scenario: Scenario) -> None:
    """Let the method fit the device that sets the round's pace: FedSPZO's ``auto_device`` if
    named, else the fleet's slowest (most methods ignore it)."""
    devices, _ = scenario.fleet.profiles()
    dtype = scenario.model.dtype
    spec = scenario.algorithm
    name = (spec.auto_device if isinstance(spec, FedSPZOSpec) else None) or min(
        (g.device for g in scenario.fleet.groups), key=lambda d: devices[d].peak_flops(dtype))
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
