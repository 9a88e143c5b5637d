"""What the engine is given, in its own terms: ``EngineConfig`` (plain numbers and names, which
``edgefed/build.py`` makes from a scenario) and ``Learner``, the algorithm as the engine sees it.

The simulator thus depends on no schema and no learning code: tests drive it with a config they
write by hand and a fake learner, and importing it loads neither pydantic's scenario nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.devices.availability import StragglerSpec
from edgefed.simulator.network import CellSpec, cell_routes
from edgefed.simulator.topology import Topology


@dataclass(frozen=True)
class EngineConfig:
    """A run's rounds and fleet rules, as the engine reads them (``rounds.*`` and ``fleet.*`` in a
    scenario; docs/scenarios.md says what each means)."""

    seed: int = 0
    dtype: str = "fp32"  # the precision the devices compute in (prices their FLOP/s)
    max_rounds: int = 10  # asynchronous rounds: model versions
    clients_per_round: int = 4
    eval_every: int = 1
    deadline_s: float | None = None
    selection: str = "uniform"  # uniform | overselect | resource_aware
    overselect: float = 1.3
    cut: str = "finish"  # finish | push: what a client cut off while computing does (docs/design.md, Closing)
    hierarchical: bool = False  # each cell's edge server aggregates its clients
    edge_rounds: int = 1  # HierFAVG's edge rounds per cloud round (hierarchical only)
    cells: dict[str, CellSpec] = field(default_factory=dict)  # shared access points and their backhauls
    topology: Topology | None = None  # instead of cells: the infrastructure graph (simulator.topology)
    aggregate_at: tuple[str, ...] = ("cell",)  # hierarchical with a topology: the kinds of node that aggregate
    stragglers: StragglerSpec = field(default_factory=StragglerSpec)
    charge_wait: bool = False  # an arrival pays for its wait to the round's end (energy_attribution: round)
    battery_fraction: float | None = None  # the share of each battery a run may spend (None: no limit)
    slots: int = 4  # asynchronous: devices training at once (C)
    per_version: int = 4  # asynchronous: arrivals folded into a version (K)
    server_lr: float = 1.0  # asynchronous: the server's step
    staleness_exponent: float = 0.5  # asynchronous: an update s versions old weighs 1/(1+s)^a (0: constant)
    max_staleness: int | None = None  # asynchronous: older updates are discarded

    def routes(self) -> dict[str, list[tuple]]:
        """Each attach node's hops to the server, as the network takes them."""
        return self.topology.routes if self.topology is not None else cell_routes(self.cells)

    def staleness_weight(self, staleness: int) -> float:
        """w(s): the weight of an update computed ``staleness`` versions ago."""
        return 1.0 / (1.0 + staleness) ** self.staleness_exponent


class Weights(Protocol):
    def all_finite(self) -> bool:
        """Whether the trainable weights hold no NaN or inf."""


class Learner(Protocol):
    """The algorithm's hooks the engine calls (``edgefed.algorithms.base.Algorithm`` and replay's
    ``ReplayAlgorithm`` are two; docs/design.md, section 4, is the contract)."""

    trainable: Weights

    def configure_round(self, round: int, selected: list[int]) -> Any: ...
    def catch_up(self, client: int, last_round: int | None, round: int, plan) -> tuple[Message, Work]: ...
    def client_update(self, client: int, round: int, plan) -> tuple[Message, Work]: ...
    def rejects(self, message: Message) -> str | None: ...
    def aggregate(self, messages: list[Message]) -> Any: ...
    def apply(self, update, round: int, plan) -> None: ...
    def fold(self, messages: list[Message], plans: list, scales: list[float], version: int) -> None: ...
    def partial(self, messages: list[Message], round: int, edge: int) -> Message | None: ...
    def model_message(self, model, messages: list[Message], round: int, edge: int) -> Message | None: ...
    def hold(self) -> Any: ...
    def load(self, model) -> None: ...
    def adopt(self, messages: list[Message]) -> None: ...
    def evaluate(self) -> tuple[float, float]: ...
    def evaluate_tuning(self) -> float | None: ...
    def peak_memory_bytes(self) -> int: ...
