"""Scenario schema (pydantic) and YAML loading.

Unknown keys are rejected and every error names its dotted field path, so a typo in a long sweep
fails at once with one line instead of silently running the default.
"""
from __future__ import annotations

import copy
import json
import re
import string
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, PrivateAttr, \
    ValidationError, field_validator, model_serializer, model_validator

from edgefed.algorithms.registry import METHODS
from edgefed.budget import COSTS
from edgefed.devices import population as populations
from edgefed.devices.availability import AvailabilitySpec, StragglerSpec
from edgefed.devices.profile import DeviceProfile, LinkProfile, default_catalog
from edgefed.simulator.network import NetworkSpec
from edgefed.simulator.topology import Topology


class ScenarioError(ValueError):
    """Bad input; ``str()`` is one line naming the file or dotted field and what is expected."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _named(value: str) -> str:
    """An empty or blank name would fall back to a default or match nothing later: refuse it here."""
    if not value.strip():
        raise ValueError("expected a name, got an empty or blank string")
    return value


#: a name or a path: not empty, not only blanks
Name = Annotated[str, AfterValidator(_named)]


class ModelSpec(Strict):
    name: Name = Field("minilm-l6", description="builtin (minilm-l6, smollm2-135m, tiny-bert), local folder or hub id")
    kind: Literal["auto", "encoder", "causal"] = "auto"
    max_length: int = Field(64, ge=8, description="tokens per example (at most the model's positions)")
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="where the host runs the learning: auto (a GPU when torch sees one), cpu, cuda, cuda:N")


class DatasetSpec(Strict):
    train: Name = Field(description="training file (TSV/CSV/JSONL, optionally .gz) relative to the scenario; "
                       "with hub: the split name")
    test: Name = Field(description="held-out file, or with hub the split name")
    hub: Name | None = Field(None, description="a Hugging Face dataset id (needs a network and "
                            "`pip install 'edgefed[datasets]'`) or a folder written by save_to_disk")
    config: Name | None = Field(None, description="with hub: the dataset's configuration (e.g. glue's sst2)")
    text_field: Name = "sentence"
    label_field: Name = "label"
    format: Literal["tsv", "csv", "jsonl"] | None = None
    train_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    train_min_words: PositiveInt | None = Field(None, description="drop training examples of fewer words "
                                                "(before train_limit): SST-2's training split is mostly phrase "
                                                "fragments, its validation split whole sentences")


class TaskSpec(Strict):
    dataset: DatasetSpec
    label_names: list[str] | None = Field(None, min_length=2)
    label_words: list[str] | None = Field(None, description="one word per class (causal LMs)")
    prompt: str = Field("{text}", description="template with {text}")
    head_init_examples: PositiveInt = Field(16, description="labelled examples per class for the prototype head")
    tuning_split: PositiveInt | None = Field(None, description="examples drawn from the training data (the same "
                                             "draw for every seed) and kept out of training, for choosing "
                                             "hyperparameters without looking at the test split")
    evaluate_on: Literal["test", "tuning", "both"] = Field(
        "test", description="the held-out set every evaluation reads: the test split, the tuning split, or both "
        "(accuracy reads the test split, tuning_accuracy the tuning split: what `edgefed compare` runs)")

    @model_validator(mode="after")
    def _tuning_split_exists(self) -> TaskSpec:
        if self.evaluate_on != "test" and self.tuning_split is None:
            raise ValueError(f"evaluate_on: {self.evaluate_on!r} needs task.tuning_split (how many training "
                             "examples to hold out)")
        return self

    @field_validator("prompt")
    @classmethod
    def _only_text_placeholder(cls, prompt: str) -> str:
        """The template is filled with str.format: allow exactly ``{text}``, so a scenario can
        neither reach into Python objects (``{text.__class__}``) nor crash the run (``{x}``)."""
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(prompt) if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a template: {exc}") from None
        if fields != [("text", "", None)]:
            raise ValueError("expected exactly one {text} placeholder and no other braces ({{ and }} for literal ones)")
        return prompt


class PartitionSpec(Strict):
    kind: Literal["iid", "dirichlet", "shards"] = "dirichlet"
    alpha: PositiveFloat = 0.5
    shards_per_client: PositiveInt = 2


AlgorithmSpec = Annotated[Union[tuple(method.Spec for method in METHODS.values())], Field(discriminator="name")]


class FleetGroup(Strict):
    device: Name | None = Field(None, description="a catalog (or fleet.devices) device; or give population instead")
    population: Name | None = Field(None, description="instead of device: a measured population (flash-phones) "
                                   "or a CSV of your own devices (FILE.csv, one row each; docs/devices.md, "
                                   "Populations); each device draws its compute, memory and bandwidth by the seed")
    like: Name | None = Field(None, description="population: the device whose power, battery, thermal, memory "
                             "bandwidth and default link the drawn devices take (default: budget-phone)")
    count: PositiveInt = 1
    link: Name | None = Field(None, description="link name; default: the device's default link")
    cell: Name | None = Field(None, description="fleet.network.cells name whose backhaul it shares")
    attach: Name | None = Field(None, description="with fleet.network.topology: the node its devices attach to "
                                "(their access link is their own; the node's path to the cloud is shared)")
    home_link: Name = Field("wifi", description="availability charging_wifi: the link a phone on a cellular "
                           "link uses while it is eligible (charging at home on WiFi)")

    @model_serializer(mode="wrap")
    def _leave_out_the_other_kind(self, handler):
        """A group's dump names only what it set of device / population / like, so a named-device
        group dumps as it did before populations (run directories and checkpoints compare dumps)."""
        data = handler(self)
        for key in ("device", "population", "like", "attach"):
            if data.get(key, "") is None:
                del data[key]
        return data

    @model_validator(mode="after")
    def _device_or_population(self) -> "FleetGroup":
        if (self.device is None) == (self.population is None):
            raise ValueError("give either device or population")
        if self.like is not None and self.population is None:
            raise ValueError("like: only for a population group")
        return self


class FleetSpec(Strict):
    groups: list[FleetGroup] = Field(min_length=1)
    devices: dict[str, DeviceProfile] = Field(default_factory=dict,
                                              description="extra device profiles (or overrides of catalog ones)")
    links: dict[str, LinkProfile] = Field(default_factory=dict, description="extra link profiles")
    devices_file: Name | None = Field(None, description="YAML with a `devices:` mapping (e.g. from "
                                     "`edgefed calibrate`), merged under `devices`")
    network: NetworkSpec = NetworkSpec()
    availability: AvailabilitySpec = AvailabilitySpec()
    stragglers: StragglerSpec = StragglerSpec()
    battery_fraction: float | None = Field(None, gt=0.0, le=1.0, description="share of each battery "
                                           "the owner gives to training; None: batteries are ignored")
    energy_attribution: Literal["session", "round"] = Field(
        "session", description="session: a client is charged from its download's start to its upload's end "
        "(compute, radio through its tail, the device's baseline), then disconnects (Bonawitz et al., MLSys 2019); "
        "round: it also pays its device's baseline and its radio's idle power while it waits for the round's end")

    @model_validator(mode="before")
    @classmethod
    def _name_custom_profiles(cls, data):
        if isinstance(data, dict):
            for section in ("devices", "links"):
                entries = data.get(section)
                if isinstance(entries, dict):
                    for key, entry in entries.items():
                        if isinstance(entry, dict):
                            entry.setdefault("name", key)
        return data

    @model_validator(mode="after")
    def _no_share_while_charging(self) -> "FleetSpec":
        if self.battery_fraction is not None and self.availability.kind == "charging_wifi":
            raise ValueError("fleet.battery_fraction: a device that trains only while charging (availability.kind "
                             "charging_wifi) has no battery share to drain; drop one of the two")
        return self

    @model_validator(mode="after")
    def _known_names(self) -> "FleetSpec":
        devices, links = self.profiles()
        for i, group in enumerate(self.groups):
            if group.population is not None and not populations.is_known(group.population):
                raise ValueError(f"groups.{i}.population: unknown population {group.population!r} "
                                 f"(known: {', '.join(populations.BUILTIN)}, or a FILE.csv of devices)")
            if self.template_name(group) not in devices:
                field = "device" if group.device is not None else "like"
                raise ValueError(f"groups.{i}.{field}: unknown device {self.template_name(group)!r} "
                                 f"(known: {', '.join(sorted(devices))})")
            link = group.link or devices[self.template_name(group)].default_link
            if link not in links:
                raise ValueError(f"groups.{i}.link: unknown link {link!r} (known: {', '.join(sorted(links))})")
            if group.home_link not in links:
                raise ValueError(f"groups.{i}.home_link: unknown link {group.home_link!r} "
                                 f"(known: {', '.join(sorted(links))})")
            topology = self.network.topology
            if group.attach is not None and (topology is None or group.attach not in topology.nodes):
                known = ", ".join(sorted(topology.nodes)) if topology else "none: no fleet.network.topology"
                raise ValueError(f"groups.{i}.attach: unknown node {group.attach!r} (known: {known})")
            if group.cell is not None and topology is not None:
                raise ValueError(f"groups.{i}.cell: with fleet.network.topology a group attaches to a node (attach:)")
            if group.cell is not None and group.cell not in self.network.cells:
                raise ValueError(f"groups.{i}.cell: unknown cell {group.cell!r} (known: "
                                 f"{', '.join(sorted(self.network.cells)) or 'none in network.cells'})")
        return self

    @model_validator(mode="after")
    def _cells_or_topology(self) -> "FleetSpec":
        if self.network.cells and self.network.topology is not None:
            raise ValueError("network.cells: give cells or a topology, not both (a cell is a topology node of kind "
                             "cell)")
        return self

    def attach_node(self, group: FleetGroup) -> str | None:
        """The node (cell or topology node) a group's devices attach to; None: straight to the server."""
        return group.attach if group.attach is not None else group.cell

    def link_name(self, group: FleetGroup) -> str:
        """The link a group's devices transfer on: its own (or the device's default), except that
        under ``charging_wifi`` a battery device on a cellular link trains only at home, on
        ``home_link``."""
        devices, links = self.profiles()
        device = devices[self.template_name(group)]
        name = group.link or device.default_link
        if self.availability.kind == "charging_wifi" and device.battery_wh is not None and links[name].cellular:
            return group.home_link
        return name

    @staticmethod
    def template_name(group: FleetGroup) -> str:
        """The device a group's devices are (a population group: the one they take all but their
        compute, memory and bandwidth from)."""
        return group.device or group.like or populations.DEFAULT_LIKE

    def profiles(self) -> tuple[dict[str, DeviceProfile], dict[str, LinkProfile]]:
        """The catalog's devices and links with this scenario's own on top."""
        catalog = default_catalog()
        return {**catalog.devices, **self.devices}, {**catalog.links, **self.links}

    @property
    def size(self) -> int:
        return sum(g.count for g in self.groups)


class AggregationSpec(Strict):
    kind: Literal["flat", "hierarchical"] = Field(
        "flat", description="flat: clients talk to the server; hierarchical: each cell's edge server "
        "aggregates its own clients and forwards one message over the backhaul, under the server's one "
        "deadline and over-selection quota across cells (needs every fleet group in a fleet.network.cells cell; with "
        "fleet.network.topology, the nodes of the kinds in `at` aggregate)")
    edge_rounds: int = Field(1, ge=1, description="hierarchical only: HierFAVG's edge rounds per cloud round - "
                             "each cell's clients sync with their edge server this many times before it forwards "
                             "its model (1: one aggregation per round; > 1: fedavg and fedzo; with a topology: "
                             "the lowest tier's)")
    at: list[Literal["ap", "cell", "edge", "region"]] | None = Field(
        None, min_length=1, description="hierarchical with fleet.network.topology (needed there): the kinds of node "
        "that aggregate the clients below them and forward one message up, e.g. [edge] or [edge, region]")

    @model_serializer(mode="wrap")
    def _leave_out_one_edge_round(self, handler):
        """The default (1) is left out of a dump, so a run directory or checkpoint written before
        edge rounds existed compares equal to its scenario."""
        data = handler(self)
        if data.get("edge_rounds") == 1:
            del data["edge_rounds"]
        if data.get("at", "") is None:
            del data["at"]
        return data


class StalenessSpec(Strict):
    kind: Literal["constant", "polynomial"] = Field(
        "polynomial", description="how an update computed s versions ago counts: constant 1, or "
        "polynomial 1/(1+s)^exponent (FedBuff's default, exponent 0.5)")
    exponent: float = Field(0.5, ge=0.0, description="polynomial: the exponent a of 1/(1+s)^a")


class BudgetSpec(Strict):
    """A run that spends a cost instead of counting rounds: what equal-cost comparisons need."""

    cost: Literal[COSTS] = Field(description="what the budget counts: client FLOPs, fleet energy (J), simulated "
                                 "seconds, or bytes up and down")
    amount: PositiveFloat = Field(description="the budget, in the cost's unit: the run stops after the round "
                                  "at which its cumulative cost reaches it")
    evaluations: PositiveInt = Field(24, description="evaluate after the round at which the cumulative cost "
                                     "first reaches each multiple of amount / evaluations (round 0 too)")


#: the rounds fields that only asynchronous rounds read (left out of a synchronous scenario's dump)
ASYNC_FIELDS = ("concurrency", "buffer", "server_lr", "staleness", "max_staleness")


class RoundsSpec(Strict):
    mode: Literal["sync", "async"] = Field(
        "sync", description="sync: rounds of clients_per_round devices, each waiting for its slowest; async: "
        "buffered asynchronous aggregation (FedBuff): concurrency devices train at once and every buffer "
        "arrivals make a new model version (docs/design.md, Asynchronous rounds)")
    max: PositiveInt = Field(10, description="rounds; async: model versions; with budget: the most rounds")
    clients_per_round: PositiveInt = 4
    deadline_s: PositiveFloat | None = None
    eval_every: PositiveInt = Field(1, description="evaluate every this many rounds and at the last (ignored "
                                    "with budget, which evaluates on the cost)")
    budget: BudgetSpec | None = Field(None, description="stop on a cost instead of a round count, evaluating "
                                      "at equal steps of that cost (synchronous rounds)")
    target_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    target_smoothing: PositiveInt = Field(1, description="the to-target figures compare the target with the "
                                          "moving mean of this many evaluations (1: each evaluation alone)")
    selection: Literal["uniform", "overselect", "resource_aware"] = Field(
        "uniform", description="overselect: pick clients_per_round x overselect, aggregate the first "
        "clients_per_round to arrive; resource_aware: prefer devices expected to finish by the deadline")
    overselect: float = Field(1.3, ge=1.0, description="over-commitment factor (FedScale's default 1.3)")
    cut: Literal["finish", "push"] = Field(
        "finish", description="a client still computing when the round closes (deadline_s: status late; the "
        "overselect quota: cut) does not know it: finish: it computes to the end and its upload is refused at "
        "its first contact (one round trip, no payload; charged its compute, that contact's promotion and "
        "handshake, and the tail; busy until then); push: a push stops it at the close (a promotion and a "
        "tail). Synchronous rounds (docs/design.md, Closing)")
    aggregation: AggregationSpec = AggregationSpec()
    concurrency: PositiveInt | None = Field(None, description="async: devices training at once (C; default "
                                            "clients_per_round)")
    buffer: PositiveInt | None = Field(None, description="async: arrivals folded into each new model version (K, "
                                       "at most concurrency; default clients_per_round)")
    server_lr: PositiveFloat = Field(1.0, description="async: the server's step, x <- x + server_lr * "
                                     "sum_i w(s_i) delta_i / K")
    staleness: StalenessSpec = StalenessSpec()
    max_staleness: NonNegativeInt | None = Field(None, description="async: updates computed more than this many "
                                                 "versions ago are discarded (status stale); null: none is")

    @property
    def slots(self) -> int:
        """Asynchronous rounds' C: the devices that train at once."""
        return self.concurrency or self.clients_per_round

    @property
    def per_version(self) -> int:
        """Asynchronous rounds' K: the arrivals each model version folds."""
        return self.buffer or self.clients_per_round

    @model_serializer(mode="wrap")
    def _sync_dumps_as_before(self, handler):
        """A synchronous scenario dumps without the asynchronous fields (run directories and
        checkpoints compare dumps, which stay as they were before asynchronous rounds)."""
        data = handler(self)
        if self.mode == "sync":
            for key in ("mode", *ASYNC_FIELDS):
                data.pop(key, None)
        else:  # a synchronous rule, refused where set: a run directory's dump loads again
            data.pop("cut", None)
        if data.get("budget", "") is None:  # likewise without a budget
            del data["budget"]
        return data

    @model_validator(mode="after")
    def _async_fields(self) -> "RoundsSpec":
        if self.mode == "sync":
            for key in ASYNC_FIELDS:
                if key in self.model_fields_set:
                    raise ValueError(f"rounds.{key}: only for rounds.mode async")
            return self
        if "cut" in self.model_fields_set:
            raise ValueError("rounds.cut: only for synchronous rounds (an asynchronous session's deadline_s is its "
                             "own, known from its start, so it stops itself)")
        if self.per_version > self.slots:
            raise ValueError(f"rounds.buffer: {self.per_version} exceeds rounds.concurrency {self.slots} "
                             "(a version folds at most as many arrivals as train at once)")
        if self.selection != "uniform":
            raise ValueError(f"rounds.selection: {self.selection} is a per-round rule; asynchronous slots are "
                             "refilled uniformly (concurrency and buffer take the stragglers' part)")
        if self.aggregation.kind != "flat":
            raise ValueError("rounds.mode: async with hierarchical aggregation is not defined (edge servers close "
                             "per round); use rounds.aggregation.kind flat")
        return self


class OutputSpec(Strict):
    dir: str = "runs"
    plots: bool = True
    report: bool = Field(True, description="RUN_DIR/report.html, one self-contained HTML page of the run "
                         "(`edgefed report` makes one for any runs or sweeps)")
    tensorboard: bool = Field(False, description="TensorBoard scalars per round in RUN_DIR/tensorboard "
                              "(pip install 'edgefed[tensorboard]')")

    @field_validator("dir")
    @classmethod
    def _no_traversal(cls, value: str) -> str:
        """A scenario (perhaps someone else's) must not write above the folder it names."""
        if ".." in Path(value).parts:
            raise ValueError(f"{value!r} climbs out with '..'; name a folder below it")
        return value


class ReplaySpec(Strict):
    trace: Name = Field(description="trace.json of a real run (relative to the scenario file); the model is not run")


class HostSpec(Strict):
    workers: PositiveInt = Field(1, description="processes or Ray actors running a round's client updates")
    backend: Literal["local", "ray"] = "local"
    gpus_per_worker: float = Field(0.0, ge=0.0, description="Ray actors only")
    feature_cache_bytes: NonNegativeInt = Field(2**31, description="host memory for the frozen layers' "
                                                "outputs per example (0: recompute every pass)")
    threads: PositiveInt | None = Field(1, description="torch CPU threads for a round's client steps (null: "
                                        "torch's default, or OMP_NUM_THREADS); feature-cache fills keep the "
                                        "process's threads; the count never changes the results")


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=200,
                      description="the run folder's name under output.dir (no '/', no leading '.')")
    seed: int = Field(0, ge=0)
    model: ModelSpec = ModelSpec()
    task: TaskSpec
    partition: PartitionSpec = PartitionSpec()
    algorithm: AlgorithmSpec
    fleet: FleetSpec
    rounds: RoundsSpec = RoundsSpec()
    output: OutputSpec = OutputSpec()
    replay: ReplaySpec | None = None
    host: HostSpec = HostSpec()
    #: what ran a run directory's copy of this scenario (its ``RECORDED`` entry): versions and
    #: device, a record, not a setting; None for a scenario written by hand
    _recorded: dict | None = PrivateAttr(None)

    @property
    def recorded_versions(self) -> dict | None:
        return self._recorded

    @model_validator(mode="after")
    def _fits_fleet(self) -> "Scenario":
        if self.rounds.clients_per_round > self.fleet.size:
            raise ValueError(f"rounds.clients_per_round: {self.rounds.clients_per_round} exceeds the "
                             f"fleet size {self.fleet.size}")
        if self.task.evaluate_on == "both" and self.replay is not None:
            raise ValueError("task.evaluate_on: both cannot be replayed (a trace records the test split's "
                             "accuracy only); use test")
        if self.rounds.mode == "async":
            if self.rounds.budget is not None:
                raise ValueError("rounds.budget: not defined for rounds.mode async (a version's cost is known only "
                                 "as its sessions end); use rounds.max")
            if self.fleet.energy_attribution == "round":
                raise ValueError("fleet.energy_attribution: round is not defined for rounds.mode async (a session "
                                 "has no round to wait for); use session")
            if self.rounds.slots > self.fleet.size:
                raise ValueError(f"rounds.concurrency: {self.rounds.slots} exceeds the fleet size {self.fleet.size}")
            if self.replay is not None:
                raise ValueError("replay: rounds.mode async cannot be replayed (which updates a version folds and "
                                 "how stale they are follow the fleet's timing, and the accuracy follows both; on "
                                 "another fleet a recorded accuracy would not be this run's); run it for real")
        edge_rounds = self.rounds.aggregation.edge_rounds
        if edge_rounds > 1 and self.rounds.aggregation.kind != "hierarchical":
            raise ValueError(f"rounds.aggregation.edge_rounds: {edge_rounds} edge rounds need kind: hierarchical "
                             "(rounds.aggregation.kind; edge servers)")
        self._tiers()
        if self.rounds.aggregation.kind == "hierarchical":
            if self.replay is not None:
                raise ValueError("rounds.aggregation.kind: hierarchical cannot be replayed (an edge's message "
                                 "size depends on what its clients uploaded); run it for real")
            if edge_rounds > 1 and not METHODS[self.algorithm.name].edge_rounds_defined:
                defined = " or ".join(name for name, method in METHODS.items() if method.edge_rounds_defined)
                raise ValueError(f"rounds.aggregation.edge_rounds: {edge_rounds} edge rounds per cloud round are not "
                                 f"defined for {self.algorithm.name} (its server state is more than a model an edge "
                                 f"could hold); use 1, or {defined}")
            if edge_rounds > 1 and self.rounds.selection == "overselect":
                raise ValueError(f"rounds.selection: overselect is not defined with {edge_rounds} edge rounds "
                                 "(rounds.aggregation.edge_rounds: which edge round's arrivals would fill the quota?)")
        return self


    def _tiers(self) -> None:
        """Hierarchical aggregation needs an aggregator on every group's path: its cell, or with a
        topology a node of a kind in ``rounds.aggregation.at``."""
        aggregation, topology = self.rounds.aggregation, self.fleet.network.topology
        if aggregation.at is not None and (aggregation.kind != "hierarchical" or topology is None):
            raise ValueError("rounds.aggregation.at: tiers need kind: hierarchical and fleet.network.topology")
        if aggregation.kind != "hierarchical":
            return
        if topology is None:
            if not self.fleet.network.cells:
                raise ValueError("rounds.aggregation.kind: hierarchical needs cells (edge servers) in "
                                 "fleet.network.cells, or a fleet.network.topology")
            for i, group in enumerate(self.fleet.groups):
                if group.cell is None:
                    raise ValueError(f"fleet.groups.{i}.cell: hierarchical aggregation needs every group "
                                     "in a cell (rounds.aggregation.kind)")
            return
        if aggregation.at is None:
            raise ValueError("rounds.aggregation.at: with a topology, name the kinds of node that aggregate "
                             "(ap, cell, edge, region)")
        paths = Topology(topology).paths
        for i, group in enumerate(self.fleet.groups):
            if group.attach is None or not any(topology.nodes[n].kind in aggregation.at for n in paths[group.attach]):
                raise ValueError(f"fleet.groups.{i}.attach: no node of a kind in rounds.aggregation.at "
                                 f"[{', '.join(aggregation.at)}] on its path to the cloud "
                                 f"({' -> '.join(paths[group.attach]) if group.attach else 'not attached'})")


SUBPATH = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)+): (.*)$", re.S)


def _format_error(exc: ValidationError) -> str:
    """One line: the dotted field path, what is wrong, and the offending value."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if p not in METHODS]
    msg = err["msg"].removeprefix("Value error, ")
    match = SUBPATH.match(msg)
    if match:  # a model validator named a deeper path itself
        sub, msg = match.groups()
        loc = sub.split(".") if sub.split(".")[0] in Scenario.model_fields else loc + sub.split(".")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "missing required field"
    value = err.get("input")
    shown = "" if err["type"] in ("missing", "value_error") or isinstance(value, (dict, list)) else f" (got {value!r})"
    return f"{'.'.join(loc) or '<root>'}: {msg}{shown}"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the
    last one silently, so a duplicated field would quietly override the first), and an alias to a
    node that contains it (``a: &x {b: *x}``): such a structure is its own member, which no field
    can hold and which would loop whatever walks it."""

    def __init__(self, stream):
        super().__init__(stream)
        self.open_parents: list = []  # the parents of the nodes being composed: with ``parent``, every ancestor

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            if any(node is self.anchors.get(event.anchor) for node in [parent, *self.open_parents]):
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refers to a node that contains it",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        self.open_parents.append(parent)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_parents.pop()

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """Safe YAML (no tags that build Python objects) with duplicate keys and self-containing aliases refused."""
    loader = UniqueKeyLoader(text)  # what yaml.safe_load does, with our loader class
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def set_dotted(data: dict, path: str, value) -> None:
    """Set ``a.b.c = value`` in nested dicts (lists indexed by integers), creating dicts as needed."""
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        if isinstance(node, list):
            node = node[int(key)]
        else:
            node = node.setdefault(key, {})
            if not isinstance(node, (dict, list)):
                raise ScenarioError(f"--set {path}: {key} is not a section")
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_overrides(items: list[str]) -> list[tuple[str, object]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ScenarioError(f"--set {item}: expected dotted.path=value")
        path, raw = item.split("=", 1)
        try:
            out.append((path.strip(), load_yaml(raw) if raw != "" else ""))
        except yaml.YAMLError as exc:
            raise ScenarioError(f"--set {path.strip()}: invalid YAML value: {getattr(exc, 'problem', exc)}") from None
    return out


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> tuple[Scenario, Path]:
    """Read, override and validate a scenario; returns it with the folder its paths are relative to."""
    path = Path(path)
    base = path.resolve().parent
    return validate_scenario(read_scenario_file(path), base, parse_overrides(overrides or []), str(path)), base


def read_scenario_file(path: Path):
    """The parsed YAML of a scenario file, before validation."""
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ScenarioError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None


def validate_scenario(raw, base: Path, overrides: list[tuple[str, object]] = (), source: str = "scenario") -> Scenario:
    """Override and validate a scenario given as a mapping (a parsed file, or a dict from Python);
    relative paths in it are relative to ``base``. ``source`` names it in error messages. The
    mapping itself is left unchanged."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: expected a mapping of scenario sections")
    raw = copy.deepcopy(raw)
    recorded = raw.pop(RECORDED, None)
    _merge_devices_file(raw, base, source)
    for dotted, value in overrides:
        try:
            set_dotted(raw, dotted, value)
        except (IndexError, ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, ScenarioError):
                raise
            raise ScenarioError(f"--set {dotted}: no such field") from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_format_error(exc)}") from None
    for field in () if scenario.task.dataset.hub else ("train", "test"):
        file = resolve_path(base, getattr(scenario.task.dataset, field))
        if not file.is_file():
            raise ScenarioError(f"{source}: task.dataset.{field}: file not found: {file}")
    for dotted, value in (("fleet.availability.file", scenario.fleet.availability.file),
                          ("fleet.network.variability.file", scenario.fleet.network.variability.file)):
        if value is not None and not resolve_path(base, value).is_file():
            raise ScenarioError(f"{source}: {dotted}: file not found: {resolve_path(base, value)}")
    if scenario.fleet.availability.kind == "trace" and scenario.fleet.availability.file is None:
        raise ScenarioError(f"{source}: fleet.availability.file: required when kind is trace")
    if scenario.fleet.network.variability.kind == "trace" and scenario.fleet.network.variability.file is None:
        raise ScenarioError(f"{source}: fleet.network.variability.file: required when kind is trace")
    try:  # a population CSV's bad row, or one too few rows, fails here rather than at the run
        populations.draw_fleet(scenario.fleet, scenario.seed, base)
    except populations.PopulationError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    scenario._recorded = recorded if isinstance(recorded, dict) else None
    return scenario


def _merge_devices_file(raw: dict, base: Path, path: str) -> None:
    """``fleet.devices_file``: its ``devices:`` go under ``fleet.devices`` (inline entries win)."""
    fleet = raw.get("fleet")
    if not isinstance(fleet, dict) or not fleet.get("devices_file"):
        return
    file = resolve_path(base, str(fleet["devices_file"]))
    try:
        loaded = load_yaml(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: fleet.devices_file: file not found: {file}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: fleet.devices_file: cannot read {file}: {exc}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("devices"), dict):
        raise ScenarioError(f"{path}: fleet.devices_file: {file} has no `devices:` mapping")
    inline = fleet.get("devices") if isinstance(fleet.get("devices"), dict) else {}
    fleet["devices"] = {**loaded["devices"], **inline}


def resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


# the key under which a run directory's scenario.yaml records the versions and device that ran it
RECORDED = "_versions"
# the fields that name a file relative to the scenario's folder
PATH_FIELDS = (("task", "dataset", "train"), ("task", "dataset", "test"), ("task", "dataset", "hub"),
               ("fleet", "devices_file"), ("fleet", "availability", "file"),
               ("fleet", "network", "variability", "file"), ("replay", "trace"))


def named_paths(resolved: dict, base: Path) -> dict[tuple[str, ...], Path]:
    """The files and folders a scenario (as a dict) names, by ``PATH_FIELDS`` entry (and each
    population CSV, by ``fleet.groups.<i>.population``), resolved against ``base``: unset fields,
    a hub dataset's split names and a hub id that is not a ``save_to_disk`` folder name none."""
    from edgefed.algorithms.data import hub_folder

    paths = {}
    for *parents, field in PATH_FIELDS:
        section = resolved
        for key in parents:
            section = section.get(key) or {}
        value = section.get(field)
        if not isinstance(value, str) or (parents == ["task", "dataset"] and field != "hub" and section.get("hub")):
            continue
        path = hub_folder(value, base) if field == "hub" else resolve_path(base, value)
        if path is not None:
            paths[(*parents, field)] = path
    for i, group in enumerate((resolved.get("fleet") or {}).get("groups") or []):  # a population CSV
        value = group.get("population") if isinstance(group, dict) else None
        if isinstance(value, str) and value.endswith(".csv"):
            paths[("fleet", "groups", str(i), "population")] = resolve_path(base, value)
    return paths


def pinned_paths(resolved: dict, base: Path) -> dict:
    """``resolved`` with every file or folder it names made absolute (a local model folder too,
    which is relative to the working folder), so a run directory's copy runs again from anywhere on
    this machine. A hub id or a builtin model name is left as it is."""
    from edgefed.algorithms.spec import BUILTIN_MODELS

    pinned = copy.deepcopy(resolved)
    for (*parents, field), path in named_paths(resolved, base).items():
        section = pinned
        for key in parents:
            section = section[int(key)] if isinstance(section, list) else section[key]
        section[field] = str(path.resolve())
    model = Path(pinned["model"]["name"]).expanduser()
    if pinned["model"]["name"] not in BUILTIN_MODELS and model.is_dir():
        pinned["model"]["name"] = str(model.resolve())
    return pinned


def scenario_dict(scenario: Scenario) -> dict:
    return scenario.model_dump(mode="json")


def json_schema() -> str:
    """The scenario JSON Schema (pydantic's), which ``edgefed schema`` writes and editors read."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **Scenario.model_json_schema(), "title": "edgefed scenario"}
    for profile in ("DeviceProfile", "LinkProfile"):  # fleet.devices/links entries take their key as name
        definition = schema["$defs"][profile]
        definition["required"] = [f for f in definition.get("required", []) if f != "name"]
    return json.dumps(schema, indent=2) + "\n"
