"""The methods a scenario can name (``algorithm.name`` picks one): per method its typed spec, where
its class lives and a tiny example configuration that the tests run it with.

The registry imports no method module: a scenario is validated, and a replay run, without torch;
the class is imported when a run builds it (``Method.cls``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgefed.algorithms.spec import DeComFLSpec, FedAvgSpec, FedKSeedSpec, FedSPZOSpec, FedZOSpec, MethodSpec


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
