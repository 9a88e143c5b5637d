"""Building a run from a scenario: data, model and algorithm, the fleet, its availability.

Builders only construct. They import the engine and, for replay scenarios, ``replay``'s trace
reader and ``ReplayAlgorithm`` (``replay`` imports ``engine`` only for type checking and never
imports this module); what drives a run (``runner``, ``parallel``, the command line) imports the
builders, never the reverse, so the package has no import cycle. The learning's builders import
torch and the model code when called, so a replay (or anything that only reads a scenario) never
loads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefed.algorithms.registry import METHODS
from edgefed.devices.availability import DEFAULT_DAILY_TRACE, Availability, daily_windows, read_daily_trace, read_trace
from edgefed.devices.population import Drawn, PopulationError, draw_fleet
from edgefed.simulator.costs import fits_in_memory
from edgefed.simulator.asynchronous import AsyncEngine
from edgefed.simulator.engine import Engine
from edgefed.simulator.fleet import Fleet, Group
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.network import link_factors, read_link_trace
from edgefed.simulator.topology import Topology
from edgefed.replay import ReplayAlgorithm, load_trace
from edgefed.scenario import FleetSpec, RoundsSpec, Scenario, ScenarioError, resolve_path
from edgefed.streams import Stream, rng

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
        fit_to_fleet(algorithm, scenario, base)
    clients = build_fleet(scenario, base)
    excluded = mark_memory_exclusions(clients, algorithm.peak_memory_bytes())
    if not clients.eligible.any():
        need = algorithm.peak_memory_bytes() / 1e9
        raise ScenarioError(f"fleet: no device can hold this method's peak memory ({need:.2f} GB)")
    driver = AsyncEngine if scenario.rounds.mode == "async" else Engine
    config = engine_config(scenario.rounds, scenario.fleet, scenario.seed, scenario.model.dtype)
    return Run(driver(algorithm, clients, config, build_availability(scenario, base)), excluded)


def engine_config(rounds: RoundsSpec, fleet: FleetSpec | None = None, seed: int = 0,
                  dtype: str = "fp32") -> EngineConfig:
    """The scenario's rounds and fleet rules in the engine's own terms."""
    staleness = rounds.staleness
    return EngineConfig(
        seed=seed, dtype=dtype, max_rounds=rounds.max, clients_per_round=rounds.clients_per_round,
        eval_every=rounds.eval_every, deadline_s=rounds.deadline_s, selection=rounds.selection,
        overselect=rounds.overselect, cut=rounds.cut, hierarchical=rounds.aggregation.kind == "hierarchical",
        edge_rounds=rounds.aggregation.edge_rounds, slots=rounds.slots, per_version=rounds.per_version,
        server_lr=rounds.server_lr, max_staleness=rounds.max_staleness,
        staleness_exponent=0.0 if staleness.kind == "constant" else staleness.exponent,
        **({} if fleet is None else dict(
            cells=fleet.network.cells,
            topology=None if fleet.network.topology is None else Topology(fleet.network.topology),
            aggregate_at=tuple(rounds.aggregation.at or ("cell",)), stragglers=fleet.stragglers,
            charge_wait=fleet.energy_attribution == "round",
            battery_fraction=fleet.battery_fraction)))


def population_draws(scenario: Scenario, base: Path) -> dict[int, Drawn]:
    """The devices of the fleet's population groups, by group index (devices/population.py)."""
    try:
        return draw_fleet(scenario.fleet, scenario.seed, base)
    except PopulationError as exc:
        raise ScenarioError(str(exc)) from None


def build_fleet(scenario: Scenario, base: Path = Path(".")) -> Fleet:
    """The fleet's devices, group by group, each link's bandwidth scaled by the fleet's per-device
    variability (or read from its trace). A population group's devices have their own rates, and
    one group per population row drawn (its FLOP/s and memory)."""
    devices, links = scenario.fleet.profiles()
    variability = scenario.fleet.network.variability
    trace = {}
    if variability.kind == "trace":
        try:
            trace = read_link_trace(resolve_path(base, variability.file))
        except ValueError as exc:
            raise ScenarioError(f"fleet.network.variability.file: {exc}") from None
    drawn = population_draws(scenario, base)
    groups, members, ups, downs = [], [], [], []
    for i, g in enumerate(scenario.fleet.groups):
        link = links[scenario.fleet.link_name(g)]
        if i in drawn:
            members.append(len(groups) + drawn[i].which)
            groups += [Group(p.name, p, link, scenario.fleet.attach_node(g)) for p in drawn[i].profiles]
            ups.append(drawn[i].up_mbps)
            downs.append(drawn[i].down_mbps)
        else:
            members.append(np.full(g.count, len(groups), dtype=np.int32))
            groups.append(Group(g.device, devices[g.device], link, scenario.fleet.attach_node(g)))
            ups.append(np.full(g.count, link.up_mbps))
            downs.append(np.full(g.count, link.down_mbps))
    group = np.concatenate(members).astype(np.int32)
    factors = link_factors(len(group), variability, scenario.seed)
    up = np.concatenate(ups) * factors[:, 0]
    down = np.concatenate(downs) * factors[:, 1]
    for cid, (up_mbps, down_mbps) in trace.items():
        if cid < len(group):
            up[cid], down[cid] = up_mbps, down_mbps
    return Fleet(groups, group, up, down)


def build_availability(scenario: Scenario, base: Path) -> Availability:
    """The fleet's availability; a population CSV's windows are trace rows of its devices (the
    availability file's own rows win)."""
    spec = scenario.fleet.availability
    trace = daily = None
    try:
        if spec.kind == "trace":
            trace = read_trace(resolve_path(base, spec.file))
        elif spec.kind == "charging_wifi":
            users = read_daily_trace(resolve_path(base, spec.file) if spec.file else DEFAULT_DAILY_TRACE)
            devices, _ = scenario.fleet.profiles()
            on_battery = [devices[scenario.fleet.template_name(g)].battery_wh is not None
                          for g in scenario.fleet.groups for _ in range(g.count)]
            daily = daily_windows(users, on_battery, spec, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(f"fleet.availability.file: {exc}") from None
    offsets = np.cumsum([0, *(g.count for g in scenario.fleet.groups)])
    windows = {int(offsets[i]) + k: w for i, drawn in population_draws(scenario, base).items()
               for k, w in drawn.windows.items()}
    if windows:
        trace = {**windows, **(trace or {})}
        spec = spec.model_copy(update={"kind": "trace"})
    return Availability(spec, scenario.fleet.size, scenario.seed, trace, daily)


def learning_device(spec: str):
    """``model.device`` resolved (a ``torch.device``): ``auto`` is the first GPU torch sees, else the CPU."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ScenarioError(f"model.device: {spec} but torch sees no GPU (use auto or cpu)")
        if device.index is not None and device.index >= count:
            raise ScenarioError(f"model.device: {spec} but torch sees {count} GPU(s)")
    return device


def device_name(device) -> str:
    """The device as a run directory records it, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    import torch

    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def build_learning(scenario: Scenario, base: Path):
    """Load data and model, partition, align the head; returns the algorithm."""
    import torch

    from edgefed.algorithms.data import DataError, FederatedData, load_split, partition, split_off
    from edgefed.algorithms.features import FeatureStore, attach_feature_caches
    from edgefed.algorithms.models import ModelLoadError, TaskModel, Tokenized, load_backbone
    from edgefed.algorithms.prototype import init_prototype_head

    ds = scenario.task.dataset
    try:
        train = load_split(ds, "train", base, scenario.task.label_names)
        if scenario.task.tuning_split is not None:
            train, tuning = split_off(train, scenario.task.tuning_split, rng(0, Stream.TUNING_SPLIT))
        held_out = scenario.task.evaluate_on
        test = tuning if held_out == "tuning" else load_split(ds, "test", base, train.label_names)
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
    device = learning_device(spec.device)
    model.to(device)
    positions = getattr(backbone.config, "max_position_embeddings", None)
    if positions is not None and spec.max_length > positions:
        raise ScenarioError(f"model.max_length: {spec.max_length} exceeds the model's {positions} positions")
    train_tok = Tokenized(train, tokenizer, spec.max_length, scenario.task.prompt)
    test_tok = Tokenized(test, tokenizer, spec.max_length, scenario.task.prompt)
    tuning_tok = Tokenized(tuning, tokenizer, spec.max_length, scenario.task.prompt) if held_out == "both" else None
    for tokenized in (train_tok, test_tok, tuning_tok):
        if tokenized is not None:
            tokenized.device = device
    try:
        init_prototype_head(model, train_tok, train.labels, scenario.task.head_init_examples, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(f"{train.source}: {exc}") from None
    data = FederatedData(train_tok, parts, test_tok, tuning_tok)
    try:
        algorithm = METHODS[scenario.algorithm.name].cls(model, data, scenario.algorithm, scenario.seed)
    except ValueError as exc:
        raise ScenarioError(str(exc) if str(exc).startswith("algorithm.") else f"algorithm.trainable: {exc}") from None
    held = {"held-out": test_tok, **({"tuning": tuning_tok} if tuning_tok is not None else {})}
    attach_feature_caches(model, algorithm.prefix, {**held, "training": train_tok},
                          scenario.host.feature_cache_bytes, FeatureStore.default())
    return algorithm


def fit_to_fleet(algorithm, scenario: Scenario, base: Path = Path(".")) -> None:
    """Let the method fit the device that sets the round's pace: the fleet's slowest unless its
    spec names another (``MethodSpec.device_to_fit``; most methods ignore it)."""
    drawn = {p.name: p for d in population_draws(scenario, base).values() for p in d.profiles}
    devices = {**scenario.fleet.profiles()[0], **drawn}
    dtype = scenario.model.dtype
    slowest = min([*(g.device for g in scenario.fleet.groups if g.device is not None), *drawn],
                  key=lambda d: devices[d].peak_flops(dtype))
    try:
        name = scenario.algorithm.device_to_fit(slowest, devices)
        algorithm.fit_device(devices[name].peak_flops(dtype), devices[name].memory_bytes)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None


def mark_memory_exclusions(fleet: Fleet, peak_bytes: int) -> list[dict]:
    """Devices that cannot hold the method's peak memory never take part; report them."""
    excluded: dict[str, dict] = {}
    for g, group in enumerate(fleet.groups):
        if not fits_in_memory(peak_bytes, group.device):
            fleet.exclude(g, f"needs {peak_bytes / 1e9:.2f} GB, has {group.device.memory_bytes / 1e9:.2f} GB")
            entry = excluded.setdefault(group.device_name, {"device": group.device_name, "count": 0,
                                                             "needs_bytes": peak_bytes,
                                                             "usable_bytes": group.device.memory_bytes})
            entry["count"] += int(np.count_nonzero(fleet.group == g))
    return list(excluded.values())
