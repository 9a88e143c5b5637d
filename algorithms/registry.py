"""The methods a scenario can name (``algorithm.name`` picks one): per method its typed spec (its
hyperparameters, from which the scenario schema is built), where its class lives and a tiny example
configuration that the tests run it with. Adding a method is its module and its entry here.

The registry imports no method module: a scenario is validated, and a replay run, without torch;
the class is imported when a run builds it (``Method.cls``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from edgefed.algorithms.spec import MethodSpec, ZOSpec


class DeComFLSpec(ZOSpec):
    name: Literal["decomfl"]


class FedSPZOSpec(ZOSpec):
    name: Literal["fedspzo"]
    perturbations: Literal[1] = Field(1, description="unused: FedSPZO takes p1 and p2")
    split: NonNegativeInt | Literal["auto"] = Field("auto", description="layer index: block 1 = embed + layers[:split]")
    p1: PositiveInt = Field(1, description="block-1 directions per step")
    p2: PositiveInt | Literal["auto"] = Field("auto", description="block-2 directions per block-1 direction")
    p2_max: PositiveInt = 32
    auto_device: str | None = Field(None, description="fleet device that split/p2 auto plan for; default the slowest")
    auto_step_s: PositiveFloat | None = Field(None, description="seconds one local step may take on auto_device")
    auto_budget: PositiveFloat = Field(2.0, description="else: step budget in plain MeZO steps (2*p1 full passes)")

    def device_to_fit(self, slowest, devices):
        """``auto_device`` if named, else the slowest."""
        name = self.auto_device or slowest
        if name not in devices:
            raise ValueError(f"algorithm.auto_device: unknown device {name!r}")
        return name


class FedKSeedSpec(ZOSpec):
    name: Literal["fedkseed"]
    perturbations: Literal[1] = Field(1, description="FedKSeed takes one perturbation per step")
    pool_size: PositiveInt = Field(4096, le=65536, description="K candidate seeds shared from the start")
    pro: bool = Field(False, description="FedKSeed-Pro: sample seeds by their scalar history")


class FedZOSpec(ZOSpec):
    name: Literal["fedzo"]


class FedAvgSpec(MethodSpec):
    name: Literal["fedavg"]
    optimizer: Literal["sgd", "adam"] = "adam"


@dataclass(frozen=True)
class Method:
    Spec: type[MethodSpec]
    where: str  # "module:Class" under edgefed.algorithms
    example: dict  # a small configuration of every field worth testing, for tests/ (tiny-bert, 8 clients)
    edge_rounds_defined: bool = False  # its server state is its weights: an edge can hold a model of its own

    @property
    def cls(self) -> type:
        """The method's ``Algorithm`` subclass (imports torch)."""
        module, name = self.where.split(":")
        return getattr(importlib.import_module(f"edgefed.algorithms.{module}"), name)


ZO = {"lr": 1e-3, "eps": 1e-3, "batch_size": 8}
METHODS: dict[str, Method] = {
    "decomfl": Method(DeComFLSpec, "decomfl:DeComFL", {**ZO, "local_steps": 2, "perturbations": 2, "trainable": "all"}),
    "fedspzo": Method(FedSPZOSpec, "fedspzo:FedSPZO", {**ZO, "local_steps": 2, "split": 2, "p1": 2, "p2": 3,
                                                       "trainable": "all"}),
    "fedkseed": Method(FedKSeedSpec, "fedkseed:FedKSeed", {**ZO, "local_steps": 3, "pool_size": 16, "pro": True,
                                                          "trainable": "last:2"}),
    "fedzo": Method(FedZOSpec, "fedzo:FedZO", {**ZO, "local_steps": 2, "perturbations": 2, "trainable": "all"},
                    edge_rounds_defined=True),
    "fedavg": Method(FedAvgSpec, "fedavg:FedAvg", {"lr": 1e-3, "local_steps": 2, "batch_size": 8, "optimizer": "adam",
                                                   "trainable": "last:1"}, edge_rounds_defined=True),
}


def example(name: str) -> dict:
    """The method's example as an ``algorithm`` section."""
    return {"name": name, **METHODS[name].example}
