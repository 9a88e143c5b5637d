"""The methods a scenario can name, each with its typed spec (``algorithm.name`` picks one)."""
from __future__ import annotations

from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.fedavg import FedAvg
from edgefed.algorithms.fedkseed import FedKSeed
from edgefed.algorithms.fedspzo import FedSPZO
from edgefed.algorithms.fedzo import FedZO

METHODS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (DeComFL, FedSPZO, FedKSeed, FedZO, FedAvg)}
