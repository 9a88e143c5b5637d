"""FedSPZO (Ahmed et al., arXiv 2502.10239): split-perturbation zero-order federated fine-tuning.

What differs from DeComFL's MeZO step: the model is split at a layer into block 1 (embed +
layers[:split]) and block 2 (layers[split:] + head), each perturbed with its own directions. Per
step, for each of ``p1`` block-1 directions u the block-1 outputs are computed once under
``+eps*u`` and once under ``-eps*u``; each of ``p2`` block-2 directions v then reuses them (v is
drawn afresh for every u, so block 2 gets ``p1*p2`` independent directions):
``g_uv = (L(+u,+v) - L(-u,-v)) / (2 eps)``. Block 2 moves along every v with its g, block 1 along
every u with the mean g over its v's. ``2*p1`` block-1 + ``2*p1*p2`` block-2 passes give
``p1*p2`` estimates for block 2, where MeZO pays ``2*p1*p2`` full passes.

On the wire it is DeComFL (whose seed plan, download and history it uses): one server-drawn seed
per step (u_i and v_j derive from it), the ``steps x p1 x p2`` fp32 scalars up, averaged scalars
kept as history and replayed on catch-up.
When block 1 holds no trainable parameter (u = 0) its output is the same under +u and -u and is
computed once per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from edgefed.algorithms.base import Algorithm, ZOSpec
from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.decomfl import SCALAR_DTYPE, SEED_DTYPE, apply_round, history_download, mean_scalars, step_seeds
from edgefed.algorithms.history import History
from edgefed.algorithms.message import Message
from edgefed.algorithms.models import Batch, TaskModel, inference_activation_bytes, param_bytes
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, buffer_numel, derive_seed
from edgefed.streams import BLOCK1, BLOCK2


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


def direction_seeds(step_seed: int, p1: int, p2: int) -> tuple[list[int], list[list[int]]]:
    """Block-1 seeds u_i and block-2 seeds v_ij of one step, all derived from its shared seed."""
    return ([derive_seed(step_seed, BLOCK1, i) for i in range(p1)],
            [[derive_seed(step_seed, BLOCK2, i, j) for j in range(p2)] for i in range(p1)])


def split_scalars(model: TaskModel, batch: Batch, split: int, dirs1: Directions, dirs2: Directions,
                  us: list[int], vs: list[list[int]], eps: float, work: Work, flops=(0.0, 0.0),
                  weight_bytes=(0.0, 0.0), features: torch.Tensor | None = None, prefix: int = 0) -> np.ndarray:
    """The ``p1 x p2`` scalars g_uv of one batch; the parameters end where they started (up to
    rounding of the +-eps moves, as in MeZO). With ``features``, the frozen prefix's output at
    layer ``prefix`` (computed and counted by the caller), block 1 starts from it, or when block 1
    is frozen altogether block 2 runs straight on it."""
    g = np.zeros((len(us), len(vs[0])), dtype=SCALAR_DTYPE)
    frozen_block1 = dirs1.numel == 0

    def block1():
        if features is None:
            return model.block1(batch, split)
        with model.cached_prefix(features, prefix):
            return model.block1(batch, split)

    def block2_loss(hidden):
        if frozen_block1 and features is not None:
            return model.suffix_loss(hidden, batch, prefix)
        return model.block2_loss(hidden, batch, split)

    shared = features if frozen_block1 else None
    for i, u in enumerate(us):
        if frozen_block1:
            if shared is None:
                shared = block1()
                work.add_forward("block1", flops[0], weight_bytes[0])
            h_plus = h_minus = shared
        else:
            dirs1.axpy(u, eps, work)
            h_plus = block1()
            dirs1.axpy(u, -2.0 * eps, work)
            h_minus = block1()
            dirs1.axpy(u, eps, work)
            work.add_forward("block1", flops[0], weight_bytes[0], count=2)
        for j, v in enumerate(vs[i]):
            dirs2.axpy(v, eps, work)
            loss_plus = float(block2_loss(h_plus))
            dirs2.axpy(v, -2.0 * eps, work)
            loss_minus = float(block2_loss(h_minus))
            dirs2.axpy(v, eps, work)
            work.add_forward("block2", flops[1], weight_bytes[1], count=2)
            g[i, j] = (loss_plus - loss_minus) / (2.0 * eps)
    return g


def split_update(dirs1: Directions, dirs2: Directions, us, vs, scalars: np.ndarray, lr: float,
                 work: Work | None = None) -> None:
    """``-lr/p1 * sum_i mean_j(g_ij) u_i`` on block 1, ``-lr/(p1 p2) * sum_ij g_ij v_ij`` on block 2."""
    g = np.asarray(scalars, dtype=SCALAR_DTYPE).astype(np.float64)
    p1, p2 = g.shape
    if dirs1.numel:
        for i, u in enumerate(us):
            dirs1.axpy(u, -lr * float(g[i].mean()) / p1, work)
    for i in range(p1):
        for j, v in enumerate(vs[i]):
            dirs2.axpy(v, -lr * float(g[i, j]) / (p1 * p2), work)


@dataclass(frozen=True)
class Plan:
    """A split and p2 chosen for a device, with the figures that decided it."""

    split: int
    p2: int
    step_flops: float
    variance_proxy: float


def plan_split(model: TaskModel, batch: Batch, trainable: set[str], p1: int, budget_flops: float,
               memory_bytes: float, cache_z: bool, p2_max: int = 64) -> Plan:
    """Pick (split, p2) for a device: the pair with the least ZO variance within a step budget.

    ZO variance of a block's estimate grows with its dimension d over its number of estimates
    (d1/p1 for block 1, d2/(p1*p2) for block 2), so the proxy to minimise is
    ``d1/p1 + d2/(p1*p2)``. For each split, p2 is the largest that keeps a step's FLOPs
    (``2*p1*F1 + 2*p1*p2*F2``, or ``F1 + ...`` when block 1 is frozen) within ``budget_flops``
    (the device's FLOP/s times the time allowed per step); splits whose peak memory (weights,
    activations, the two cached block-1 outputs, direction buffers) exceeds the device's are
    skipped. Ties go to the deeper split (smaller block 2).
    """
    best, weights = None, param_bytes(model.parameters())
    for split in range(model.num_layers + 1):
        names1, names2 = model.block_param_names(split)
        params1 = [p for n, p in model.named_parameters() if n in names1 & trainable]
        params2 = [p for n, p in model.named_parameters() if n in names2 & trainable]
        d1, d2 = sum(p.numel() for p in params1), sum(p.numel() for p in params2)
        if d2 == 0:
            continue
        f1 = model.forward_flops(batch, "block1", split)
        f2 = model.forward_flops(batch, "block2", split)
        block1_cost = 2 * p1 * f1 if d1 else f1
        p2 = int(min(p2_max, max(1, (budget_flops - block1_cost) // (2 * p1 * f2))))
        buffers = sum(buffer_numel([p.numel() for p in params], cache_z) for params in (params1, params2))
        memory = (weights + inference_activation_bytes(model, *batch.shape)
                  + 2 * cached_output_bytes(model, *batch.shape) + buffers * params2[0].element_size())
        if memory > memory_bytes:
            continue
        proxy = d1 / p1 + d2 / (p1 * p2)
        candidate = Plan(split, p2, block1_cost + 2 * p1 * p2 * f2, proxy)
        if best is None or proxy <= best.variance_proxy:
            best = candidate
    if best is None:
        raise ValueError("algorithm.split: no split fits this device's memory")
    return best


def cached_output_bytes(model: TaskModel, batch_size: int, seq_len: int) -> int:
    """One block-1 output kept for block 2 (batch x tokens x hidden)."""
    return batch_size * seq_len * model.backbone.config.hidden_size * next(model.parameters()).element_size()


class FedSPZO(Algorithm):
    name = "fedspzo"
    Spec = FedSPZOSpec
    cfg: FedSPZOSpec

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.split = model.num_layers if cfg.split == "auto" else int(cfg.split)
        if not 0 <= self.split <= model.num_layers:
            raise ValueError(f"algorithm.split: {self.split} is outside 0..{model.num_layers}")
        self.p2 = 1 if cfg.p2 == "auto" else int(cfg.p2)
        self.history = History(self.trainable.names, self.trainable.params)  # seeds[K], scalars[K, p1, p2]
        self.make_directions()
        if "auto" in (cfg.split, cfg.p2):
            self.plan_for(None, float("inf"))

    def fit_device(self, device_flops, memory_bytes):
        self.plan_for(device_flops, memory_bytes)

    def plan_for(self, device_flops: float | None, memory_bytes: float) -> Plan | None:
        """Resolve ``split``/``p2: auto`` for a device of ``device_flops`` FLOP/s and
        ``memory_bytes``; values fixed in the scenario are kept. The step budget is
        ``auto_step_s`` seconds on that device, else ``auto_budget`` plain MeZO steps
        (``2*p1`` full passes)."""
        cfg = self.cfg
        if "auto" not in (cfg.split, cfg.p2):
            return None
        if cfg.auto_step_s is not None and device_flops is not None:
            budget = cfg.auto_step_s * device_flops
        else:
            budget = cfg.auto_budget * 2 * cfg.p1 * self.model.forward_flops(self._probe_batch(), "full")
        plan = plan_split(self.model, self._probe_batch(), set(self.trainable.names), cfg.p1, budget,
                          memory_bytes, cfg.cache_z, cfg.p2_max)
        if cfg.split == "auto":
            self.split = plan.split
        if cfg.p2 == "auto":
            self.p2 = plan.p2
        self.make_directions()
        return plan

    def _probe_batch(self) -> Batch:
        return self.data.train.batch(range(min(self.cfg.batch_size, len(self.data.train))))

    def make_directions(self):
        names1, _ = self.model.block_param_names(self.split)
        in1 = [n in names1 for n in self.trainable.names]
        params = self.trainable.params
        self.dirs1 = Directions([p for p, b in zip(params, in1) if b], self.cfg.distribution, self.cfg.cache_z)
        self.dirs2 = Directions([p for p, b in zip(params, in1) if not b], self.cfg.distribution, self.cfg.cache_z)
        self._block_bytes = (float(param_bytes(p for n, p in self.model.named_parameters() if n in names1)),
                             float(param_bytes(p for n, p in self.model.named_parameters() if n not in names1)))

    def replay_step(self, step_seed: int, scalars: np.ndarray, work: Work | None = None) -> None:
        us, vs = direction_seeds(step_seed, self.cfg.p1, self.p2)
        split_update(self.dirs1, self.dirs2, us, vs, np.asarray(scalars).reshape(self.cfg.p1, self.p2),
                     self.cfg.lr, work)

    # -- server (DeComFL's) -----------------------------------------------------------------
    def configure_round(self, round, selected):
        return np.array(step_seeds(self.seed, round, self.cfg.local_steps), dtype=SEED_DTYPE)

    def catch_up(self, client, last_round, round, plan):
        arrays, steps = history_download(self.history, last_round, round, plan)
        work = Work()
        p1 = self.cfg.p1
        self.dirs1.charge_axpy(work, steps * p1 if self.dirs1.numel else 0)
        self.dirs2.charge_axpy(work, steps * p1 * self.p2)
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message("history", round, client, arrays), work

    def aggregate(self, messages):
        return mean_scalars(messages)

    def update_arrays(self, update):
        return {"scalars": update}

    def apply(self, update, round, plan):
        apply_round(self.history, self.replay_step, update, round, plan)

    def state(self):
        return self.history.state()

    def load_state(self, state):
        self.history.load_state(state)

    # -- client --------------------------------------------------------------------------
    def client_update(self, client, round, plan):
        cfg, work = self.cfg, Work()
        rng = self.batch_rng(client, round)
        part = self.data.parts[client]
        start = self.trainable.snapshot()
        scalars = np.zeros((cfg.local_steps, cfg.p1, self.p2), dtype=SCALAR_DTYPE)
        with torch.no_grad():
            for k in range(cfg.local_steps):
                batch = self.data.train.batch(sample_batch(part, cfg.batch_size, rng))
                features = self.prefix_features(batch, work)  # the frozen layers, once per batch
                flops, weight_bytes = self.pass_costs(batch)
                us, vs = direction_seeds(int(plan[k]), cfg.p1, self.p2)
                scalars[k] = split_scalars(self.model, batch, self.split, self.dirs1, self.dirs2, us, vs,
                                           cfg.eps, work, flops, weight_bytes, features, self.prefix)
                split_update(self.dirs1, self.dirs2, us, vs, scalars[k], cfg.lr, work)
        self.trainable.restore(start)
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message("seed-scalars", round, client, {"scalars": scalars}), work

    def pass_costs(self, batch: Batch) -> tuple[tuple[float, float], tuple[float, float]]:
        """(FLOPs, weight bytes) of one block-1 and one block-2 pass on ``batch``, net of the frozen
        prefix (counted once per batch by ``prefix_features``): block 1 runs from the prefix's
        output, or when block 1 is frozen, block 2 does."""
        model, split, prefix = self.model, self.split, self.prefix
        block1 = model.forward_flops(batch, "block1", split)
        block2 = model.forward_flops(batch, "block2", split)
        if not prefix:
            return (block1, block2), self._block_bytes
        if not self.dirs1.numel:
            return (0.0, model.forward_flops(batch, "block2", prefix)), (0.0, self.weight_bytes - self.prefix_weight_bytes)
        return ((block1 - model.forward_flops(batch, "block1", prefix), block2),
                (self._block_bytes[0] - self.prefix_weight_bytes, self._block_bytes[1]))

    def held_bytes(self):
        """The two cached block-1 outputs and both blocks' direction buffers."""
        shape = (self.cfg.batch_size, self.data.train.max_length)
        return 2 * cached_output_bytes(self.model, *shape) + self.dirs1.buffer_bytes + self.dirs2.buffer_bytes
