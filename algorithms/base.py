"""The algorithm contract, in the spirit of Flower's Strategy: hooks get the round and what the
server planned for it, and return results; the engine owns the loop (docs/design.md, section 4)::

    plan = algo.configure_round(round, selected)        # server: what the round's clients share
    for client in selected:                              # real learning on the host, fixed order
        down, replay_work = algo.catch_up(client, last_sync[client], round, plan)
        up, work = algo.client_update(client, round, plan)   # starts from, and leaves, the global model
    algo.apply(algo.aggregate([up of clients that arrived in time]), round, plan)
    accuracy, loss = algo.evaluate()

Asynchronous rounds (FedBuff) call the same ``configure_round``, ``catch_up`` and
``client_update`` per session, and fold every K arrivals with ``algo.fold(uploads, their plans,
scales, version)`` instead of ``apply(aggregate(...))``.

With hierarchical aggregation each cell's edge server sends ``algo.partial(its cell's uploads)``
and the server applies ``algo.aggregate`` of those partial messages instead. With K > 1 edge
rounds per cloud round (HierFAVG) an edge holds a model of its own between them: only methods
whose server state is their weights define that (the registry's ``edge_rounds_defined``; ``delta.WeightDelta``'s
``hold``, ``load``, ``model_message`` and ``adopt``).

``catch_up`` and ``client_update`` are templates: a method writes only what it sends
(``download``, ``local_update``); putting the global model back and stamping the method's peak
memory on the work happen here, once. ``Message`` sizes are exact wire bytes; ``Work`` counts
FLOPs/bytes/passes, never seconds.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from edgefed.algorithms.aggregation import data_weights, partial_message, upload_weights
from edgefed.algorithms.data import FederatedData
from edgefed.algorithms.evaluation import evaluate
from edgefed.algorithms.memory import MemoryModel
from edgefed.algorithms.message import Message
from edgefed.algorithms.models import TaskModel
from edgefed.algorithms.passes import CountedPasses
from edgefed.algorithms.spec import MethodSpec
from edgefed.algorithms.trainable import select_trainable
from edgefed.algorithms.work import Work
from edgefed.streams import Stream, rng


class Algorithm(MemoryModel, CountedPasses, ABC):
    """A federated method on one host model. Subclasses override the hooks that differ."""

    name: ClassVar[str]
    #: message kinds (``message.KINDS``) of what a client downloads and uploads
    download_kind: ClassVar[str]
    upload_kind: ClassVar[str]
    #: the perturbation directions of a ZO method (None for first-order methods)
    dirs = None

    def __init__(self, model: TaskModel, data: FederatedData, cfg: MethodSpec, seed: int):
        self.model = model
        self.data = data
        self.cfg = cfg
        self.seed = seed
        self.trainable = select_trainable(model, cfg.trainable)
        #: layers below the lowest trainable parameter: run once per batch (``prefix_features``)
        self.prefix = model.frozen_prefix(set(self.trainable.names))

    # -- server hooks --------------------------------------------------------------------
    def configure_round(self, round: int, selected: list[int]) -> Any:
        """Called once per round before any client runs; returns the round's plan (what every
        selected client shares, e.g. DeComFL's step seeds), handed to the other hooks."""
        return None

    def catch_up(self, client: int, last_round: int | None, round: int, plan) -> tuple[Message, Work]:
        """What ``client`` (last synced after ``last_round``, None if never) downloads and
        recomputes to hold the current global model, with the round's plan."""
        work = Work()
        arrays = self.download(last_round, round, plan, work)
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message(self.download_kind, round, client, arrays), work

    @abstractmethod
    def download(self, last_round: int | None, round: int, plan, work: Work) -> dict[str, np.ndarray]:
        """``catch_up``'s arrays; charges ``work`` for rebuilding the global model from them."""

    @abstractmethod
    def aggregate(self, messages: list[Message]):
        """Combine the uploads that arrived in time into one update (None when there are none)."""

    @abstractmethod
    def apply(self, update, round: int, plan) -> None:
        """Move the global model by ``update`` (None: nothing arrived)."""

    @abstractmethod
    def update_arrays(self, update) -> dict[str, np.ndarray]:
        """An ``aggregate`` result as arrays in the layout of a client upload (what an edge
        server forwards, so that ``aggregate`` takes its message like a client's)."""

    def upload_weight(self, message: Message) -> int:
        """How much a client's upload counts in the server's mean (1: every client alike)."""
        return 1

    def fold(self, messages: list[Message], plans: list, scales: list[float], version: int) -> None:
        """Asynchronous rounds' server step (FedBuff): move the global model by the buffered
        uploads ``messages``, each computed under its own ``plans`` entry at an older version,
        ``x <- x + sum_i scales_i * u_i / sum_j u_j * delta_i`` (``u``: ``upload_weight``;
        ``scales_i``: the server step times the staleness weight w(s_i)), and make it ``version``.
        With one upload and a scale of 1 it is ``apply(aggregate([upload]))``, bit for bit."""
        raise NotImplementedError(f"{self.name}: no asynchronous fold")

    def fold_weights(self, messages: list[Message], scales: list[float]) -> np.ndarray:
        """``fold``'s per-upload coefficients: the method's own mean weights times ``scales``."""
        return data_weights(upload_weights(messages, self.upload_weight)) * np.asarray(scales, dtype=np.float64)

    def partial(self, messages: list[Message], round: int, edge: int) -> Message | None:
        """An edge server's aggregate of its cell's uploads (None when there are none): their
        mean as ``aggregate`` forms it, with the total weight it stands for, so the server's
        ``aggregate`` of the cells' messages equals the flat one up to float rounding."""
        update = self.aggregate(messages)
        if update is None:
            return None
        weight = int(upload_weights(messages, self.upload_weight).sum())
        return partial_message(self.update_arrays(update), weight, round, edge)

    def evaluate(self) -> tuple[float, float]:
        """Held-out accuracy and loss of the global model."""
        return evaluate(self.model, self.data.test)

    def evaluate_tuning(self) -> float | None:
        """The global model's accuracy on the tuning split, when the run holds one out to read
        beside the test split (``task.evaluate_on: both``); None otherwise."""
        return None if self.data.tuning is None else evaluate(self.model, self.data.tuning)[0]

    def fit_device(self, device_flops: float, memory_bytes: float) -> None:
        """Adapt to the device that paces the fleet (its FLOP/s and usable memory) before the
        first round; methods with a per-device plan (FedSPZO's ``auto`` split) override it."""

    def state(self) -> dict[str, np.ndarray]:
        """Server state needed to resume a run beyond the trainable weights, as named numpy arrays
        (checkpoints store them as safetensors, never pickle; parallel workers receive them)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass

    def rejects(self, message: Message) -> str | None:
        """Why the server must not absorb ``message`` (None if it may): a diverging local step
        (NaN/inf loss or scalar) shows as non-finite values in what the client sends."""
        bad = {name: arr for name, arr in message.arrays.items()
               if arr.dtype.kind == "f" and not np.isfinite(arr).all()}
        if not bad:
            return None
        return "non-finite " + ", ".join(f"{name} ({int(np.isnan(a).sum())} nan, {int(np.isinf(a).sum())} inf)"
                                         for name, a in bad.items())

    # -- client --------------------------------------------------------------------------
    def client_update(self, client: int, round: int, plan) -> tuple[Message, Work]:
        """Run the client's real local steps from the global model and return its upload; the host
        model is the global model again afterwards. ``round`` keys the client's draws (batches,
        directions): the round's number, or under asynchronous rounds the session's own number
        (1 + its index in the start order), so two sessions of one device never draw alike."""
        work, start = Work(), self.trainable.snapshot()
        arrays = self.local_update(client, round, plan, work, start)
        self.trainable.restore(start)
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message(self.upload_kind, round, client, arrays), work

    @abstractmethod
    def local_update(self, client: int, round: int, plan, work: Work,
                     start: list[torch.Tensor]) -> dict[str, np.ndarray]:
        """The client's local steps on the trainable parameters, which held ``start`` (the global
        model) before; returns the upload's arrays."""

    def batch_rng(self, client: int, round: int) -> np.random.Generator:
        return rng(self.seed, Stream.BATCHES, round, client)
