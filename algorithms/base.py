"""The algorithm contract, in the spirit of Flower's Strategy: hooks get the round and what the
server planned for it, and return results; the engine owns the loop (docs/design.md, section 4)::

    plan = algo.configure_round(round, selected)        # server: what the round's clients share
    for client in selected:                              # real learning on the host, fixed order
        down, replay_work = algo.catch_up(client, last_sync[client], round, plan)
        up, work = algo.client_update(client, round, plan)   # starts from, and leaves, the global model
    algo.apply(algo.aggregate([up of clients that arrived in time]), round, plan)
    accuracy, loss = algo.evaluate()

With hierarchical aggregation each cell's edge server sends ``algo.partial(its cell's uploads)``
and the server applies ``algo.aggregate`` of those partial messages instead.

``Message`` sizes are exact wire bytes; ``Work`` counts FLOPs/bytes/passes, never seconds. Each
method's hyperparameters are a typed spec (``MethodSpec``) defined beside it; the scenario schema
is built from them.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from edgefed.streams import Stream, rng

from edgefed.algorithms.aggregation import partial_message, upload_weights
from edgefed.algorithms.data import Tokenized
from edgefed.algorithms.message import Message
from edgefed.algorithms.models import TaskModel, inference_activation_bytes, param_bytes, prefix_output_bytes
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import flatten_

TRAINABLE_PATTERN = r"^(all|head|bias|norm|lora|last:[1-9]\d*)(\+(all|head|bias|norm|lora|last:[1-9]\d*))*$"


class MethodSpec(BaseModel):
    """A method's hyperparameters: unknown keys and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str  # each method narrows it to its own Literal: the scenario's discriminator
    lr: PositiveFloat = 1e-3
    local_steps: PositiveInt = 1
    batch_size: PositiveInt = 16
    trainable: str = Field("all", description="all | head | bias | norm | lora | last:N, joined with +",
                           pattern=TRAINABLE_PATTERN)


class ZOSpec(MethodSpec):
    """What every zero-order method shares: MeZO's step and its directions."""

    eps: PositiveFloat = 1e-3
    perturbations: PositiveInt = 1
    distribution: Literal["gaussian", "rademacher"] = "gaussian"
    cache_z: bool = Field(False, description="the device draws z once per step and keeps it (charged one draw "
                          "per step and a trainable-size buffer; off: drawn for every pass, MeZO's way). The host "
                          "keeps z either way, so this moves simulated figures, not host speed")


@dataclass
class FederatedData:
    """The training set tokenised once, each client's example indices, and the held-out set."""

    train: Tokenized
    parts: list[np.ndarray]
    test: Tokenized

    @property
    def num_clients(self) -> int:
        return len(self.parts)


@dataclass
class Trainable:
    """The parameter subset a method updates (names in a fixed order), as views of one flat buffer."""

    names: list[str]
    params: list[torch.nn.Parameter] = field(repr=False)

    def __post_init__(self):
        self.flat = flatten_(self.params)

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params)

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, snapshot):
                p.copy_(saved)


LORA_TARGETS = {"encoder": ["query", "value"], "causal": ["q_proj", "v_proj"]}


def add_lora(model: TaskModel, rank: int = 8, alpha: int = 16) -> None:
    """Inject LoRA adapters (peft; DeComFL's r=8, alpha=16) into the attention query and value
    projections. B starts at zero, so the model computes exactly what it did before."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS[model.kind])
    inject_adapter_in_model(config, model.backbone)


def select_trainable(model: TaskModel, subset: str) -> Trainable:
    """Resolve a subset spec: ``all``, ``head``, ``bias``, ``norm``, ``lora`` (adapters injected
    on first use), ``last:N`` (the last N layers + head), joined with ``+``."""
    if "lora" in subset.split("+") and not any("lora_" in n for n, _ in model.named_parameters()):
        add_lora(model)
    head_names = {n for n, _ in model.named_parameters() if n.startswith("head.")}
    if model.kind == "causal":
        # a tied LM head is the embedding matrix; "head" then means the final norm
        head_names = {n for n, _ in model.named_parameters() if n.startswith("backbone.model.norm")}
    picks: set[str] = set()
    for part in subset.split("+"):
        if part == "all":
            picks |= {n for n, _ in model.named_parameters()}
        elif part == "head":
            picks |= head_names
        elif part == "bias":
            picks |= {n for n, _ in model.named_parameters() if n.endswith(".bias")}
        elif part == "norm":
            picks |= {n for n, _ in model.named_parameters() if "norm" in n.lower()}
        elif part == "lora":
            picks |= {n for n, _ in model.named_parameters() if "lora_" in n}
        elif part.startswith("last:"):
            count = int(part.split(":", 1)[1])
            if not 0 < count <= model.num_layers:
                raise ValueError(f"{part!r}: the model has {model.num_layers} layers")
            block1, block2 = model.block_param_names(model.num_layers - count)
            picks |= block2
        else:
            raise ValueError(f"unknown trainable subset {part!r}")
    named = [(n, p) for n, p in model.named_parameters() if n in picks]
    if not named:
        raise ValueError(f"trainable subset {subset!r} selects no parameters")
    for _, p in model.named_parameters():
        p.requires_grad_(False)
    return Trainable([n for n, _ in named], [p for _, p in named])


class Algorithm(ABC):
    """A federated method on one host model. Subclasses override the hooks that differ."""

    name: ClassVar[str]
    Spec: ClassVar[type[MethodSpec]]
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

    @abstractmethod
    def catch_up(self, client: int, last_round: int | None, round: int, plan) -> tuple[Message, Work]:
        """What ``client`` (last synced after ``last_round``, None if never) downloads and
        recomputes to hold the current global model, with the round's plan."""

    @abstractmethod
    def client_update(self, client: int, round: int, plan) -> tuple[Message, Work]:
        """Run the client's real local steps from the global model; return its upload."""

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

    # -- memory: one rule for every method ------------------------------------------------
    def peak_memory_bytes(self) -> int:
        """The method's peak on a device: all weights, the activations its passes keep at the
        largest batch, the frozen prefix's output and what the method itself holds (``held_bytes``)."""
        return (int(self.weight_bytes) + self.activation_bytes() + self.prefix_memory_bytes()
                + self.held_bytes())

    def activation_bytes(self) -> int:
        """Inference-level activations (a no-grad forward, one layer live at a time)."""
        return inference_activation_bytes(self.model, self.cfg.batch_size, self.data.train.max_length)

    def held_bytes(self) -> int:
        """Buffers beyond weights and activations: a ZO method's direction buffer by default."""
        return self.dirs.buffer_bytes if self.dirs is not None else 0

    # -- shared helpers ------------------------------------------------------------------
    def batch_rng(self, client: int, round: int) -> np.random.Generator:
        return rng(self.seed, Stream.BATCHES, round, client)

    def prefix_features(self, batch, work: Work):
        """The frozen prefix's output on ``batch`` (None when there is none), counted once: every
        perturbation of this batch starts from it. The host may take it from its feature cache;
        the device is charged for computing it."""
        if not self.prefix:
            return None
        work.add_forward("prefix", self.model.forward_flops(batch, "block1", self.prefix), self.prefix_weight_bytes)
        return self.model.prefix_features(batch, self.prefix)

    def counted_loss(self, batch, work: Work):
        """The loss on ``batch`` as a closure that charges one pass per call (the loss function every
        MeZO-style step evaluates at +eps z and -eps z): the full model, or with a frozen prefix
        only the layers from the first trainable one up, the prefix being charged once here."""
        if not self.prefix:
            flops, weight_bytes = self.model.forward_flops(batch, "full"), self.weight_bytes

            def loss():
                work.add_forward("full", flops, weight_bytes)
                return self.model.loss(batch)

            return loss
        features = self.prefix_features(batch, work)
        flops = self.model.forward_flops(batch, "block2", self.prefix)
        weight_bytes = self.weight_bytes - self.prefix_weight_bytes

        def suffix_loss():
            work.add_forward("suffix", flops, weight_bytes)
            return self.model.suffix_loss(features, batch, self.prefix)

        return suffix_loss

    @functools.cached_property
    def weight_bytes(self) -> float:
        """All weights: what one forward pass reads from memory (the parameter set is fixed once the
        method is built, so it is summed once)."""
        return float(param_bytes(self.model.parameters()))

    @functools.cached_property
    def prefix_weight_bytes(self) -> float:
        """The frozen prefix's weights: what computing its output reads."""
        names, _ = self.model.block_param_names(self.prefix)
        return float(param_bytes(p for n, p in self.model.named_parameters() if n in names)) if self.prefix else 0.0

    def prefix_memory_bytes(self) -> int:
        """Holding a batch's frozen-prefix output for the step's passes."""
        if not self.prefix:
            return 0
        return prefix_output_bytes(self.model, self.cfg.batch_size, self.data.train.max_length, self.prefix)


@torch.no_grad()
def evaluate(model: TaskModel, test: Tokenized, batch_size: int = 64) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on the held-out set (from its feature cache when it has one)."""
    correct, total_loss = 0, 0.0
    for batch in test.batches(batch_size):
        cache = batch.cache
        logits = (model.suffix_logits(cache.lookup(batch), batch, cache.split) if cache else model.logits(batch)).float()
        total_loss += float(torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
        correct += int((logits.argmax(-1) == batch.labels).sum())
    return correct / len(test), total_loss / len(test)


@torch.no_grad()
def init_prototype_head(model: TaskModel, train: Tokenized, labels: np.ndarray, per_class: int, seed: int) -> None:
    """Set the encoder head to the normalised mean embedding of ``per_class`` labelled examples of
    each class (a nearest-prototype classifier; zero-shot accuracy is its accuracy at round 0)."""
    if model.kind != "encoder":
        return
    draw = rng(seed, Stream.PROTOTYPES)
    protos = []
    for label in range(model.num_labels):
        pool = np.flatnonzero(labels == label)
        if len(pool) == 0:
            raise ValueError(f"no training example has label {label}")
        picks = draw.choice(pool, size=min(per_class, len(pool)), replace=False)
        batch = train.batch(sorted(picks.tolist()))
        hidden = model._backbone_out(batch)
        mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        protos.append(torch.nn.functional.normalize(pooled.mean(0), dim=-1))
    model.head.weight.copy_(torch.stack(protos))
    model.head.bias.zero_()
