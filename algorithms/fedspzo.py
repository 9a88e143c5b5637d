"""FedSPZO (Ahmed et al., arXiv 2502.10239): split-perturbation zero-order federated fine-tuning.

What differs from DeComFL's MeZO step: the model is split at a layer into block 1 (embed +
layers[:split]) and block 2 (layers[split:] + head), each perturbed with its own directions. Per
step, for each of ``p1`` block-1 directions u the block-1 outputs are computed once under
``+eps*u`` and once under ``-eps*u``; each of ``p2`` block-2 directions v then reuses them (v is
drawn afresh for every u, so block 2 gets ``p1*p2`` independent directions):
``g_uv = (L(+u,+v) - L(-u,-v)) / (2 eps)``. Block 2 moves along every v with its g, block 1 along
every u with the mean g over its v's. ``2*p1`` block-1 + ``2*p1*p2`` block-2 passes give
``p1*p2`` estimates for block 2, where MeZO pays ``2*p1*p2`` full passes.

On the wire it is DeComFL (whose server, ``SharedSeedServer``, it is): one server-drawn seed
per step (u_i and v_j derive from it), the ``steps x p1 x p2`` fp32 scalars up, averaged scalars
kept as history and replayed on catch-up.
When block 1 holds no trainable parameter (u = 0) its output is the same under +u and -u and is
computed once per step.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.decomfl import SCALAR_DTYPE, SharedSeedServer
from edgefed.algorithms.models import Batch, TaskModel, inference_activation_bytes, param_bytes
from edgefed.algorithms.registry import FedSPZOSpec
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, buffer_numel, derive_seed, two_point_scalar, two_sided
from edgefed.streams import BLOCK1, BLOCK2


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
            return lambda: model.suffix_loss(hidden, batch, prefix)
        return lambda: model.block2_loss(hidden, batch, split)

    shared = features if frozen_block1 else None
    for i, u in enumerate(us):
        if not frozen_block1:
            h_plus, h_minus = two_sided(block1, dirs1, u, eps, work)
            work.add_forward("block1", flops[0], weight_bytes[0], count=2)
        elif shared is None:  # block 1 gives the same output under +u and -u: run it once per step
            h_plus = h_minus = shared = block1()
            work.add_forward("block1", flops[0], weight_bytes[0])
        else:
            h_plus = h_minus = shared
        for j, v in enumerate(vs[i]):
            g[i, j] = two_point_scalar(block2_loss(h_plus), dirs2, v, eps, work, block2_loss(h_minus))
            work.add_forward("block2", flops[1], weight_bytes[1], count=2)
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


@dataclass(frozen=True)
class Blocks:
    """Where FedSPZO splits the model and how it perturbs each side, fixed before the first round."""

    split: int
    p2: int
    dirs1: Directions
    dirs2: Directions
    weight_bytes: tuple[float, float]  # each block's weights: what one pass of it reads


class FedSPZO(SharedSeedServer):
    name = "fedspzo"
    cfg: FedSPZOSpec

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        if cfg.split != "auto" and not 0 <= int(cfg.split) <= model.num_layers:
            raise ValueError(f"algorithm.split: {int(cfg.split)} is outside 0..{model.num_layers}")
        #: (FLOP/s, memory bytes) of the device ``auto`` plans for; ``fit_device`` names the fleet's
        self.device: tuple[float | None, float] = (None, float("inf"))

    def fit_device(self, device_flops, memory_bytes):
        if "blocks" in vars(self):
            raise RuntimeError("fedspzo: fit_device after the blocks were planned")
        self.device = (device_flops, memory_bytes)
        self.blocks  # noqa: B018 - planned now, so that a device the plan cannot fit is refused here

    @functools.cached_property
    def blocks(self) -> Blocks:
        """The split and p2 (``auto`` ones planned for ``device``) and each block's directions:
        made once, on first use, so every client of a run and every parallel worker has the same."""
        cfg, model = self.cfg, self.model
        plan = self.plan_for(*self.device)
        split = plan.split if cfg.split == "auto" else int(cfg.split)
        p2 = plan.p2 if cfg.p2 == "auto" else int(cfg.p2)
        names1, _ = model.block_param_names(split)
        in1 = [n in names1 for n in self.trainable.names]
        dirs = [Directions([p for p, b in zip(self.trainable.params, in1) if b == side], cfg.distribution, cfg.cache_z)
                for side in (True, False)]
        weight_bytes = tuple(float(param_bytes(p for n, p in model.named_parameters() if (n in names1) == side))
                             for side in (True, False))
        return Blocks(split, p2, *dirs, weight_bytes)

    def plan_for(self, device_flops: float | None, memory_bytes: float) -> Plan | None:
        """The plan for ``split``/``p2: auto`` on a device of ``device_flops`` FLOP/s and
        ``memory_bytes`` (None when neither is auto). The step budget is ``auto_step_s`` seconds
        on that device, else ``auto_budget`` plain MeZO steps (``2*p1`` full passes)."""
        cfg = self.cfg
        if "auto" not in (cfg.split, cfg.p2):
            return None
        if cfg.auto_step_s is not None and device_flops is not None:
            budget = cfg.auto_step_s * device_flops
        else:
            budget = cfg.auto_budget * 2 * cfg.p1 * self.model.forward_flops(self._probe_batch(), "full")
        return plan_split(self.model, self._probe_batch(), set(self.trainable.names), cfg.p1, budget,
                          memory_bytes, cfg.cache_z, cfg.p2_max)

    def _probe_batch(self) -> Batch:
        return self.data.train.batch(range(min(self.cfg.batch_size, len(self.data.train))))

    def replay_step(self, step_seed, scalars, work=None):
        blocks = self.blocks
        us, vs = direction_seeds(step_seed, self.cfg.p1, blocks.p2)
        split_update(blocks.dirs1, blocks.dirs2, us, vs, np.asarray(scalars).reshape(self.cfg.p1, blocks.p2),
                     self.cfg.lr, work)

    def charge_replay(self, work, steps):
        blocks, p1 = self.blocks, self.cfg.p1
        blocks.dirs1.charge_axpy(work, steps * p1 if blocks.dirs1.numel else 0)
        blocks.dirs2.charge_axpy(work, steps * p1 * blocks.p2)

    def local_update(self, client, round, plan, work, start):
        cfg, blocks = self.cfg, self.blocks
        rng = self.batch_rng(client, round)
        part = self.data.parts[client]
        scalars = np.zeros((cfg.local_steps, cfg.p1, blocks.p2), dtype=SCALAR_DTYPE)
        with torch.no_grad():
            for k in range(cfg.local_steps):
                batch = self.data.train.batch(sample_batch(part, cfg.batch_size, rng))
                features = self.prefix_features(batch, work)  # the frozen layers, once per batch
                flops, weight_bytes = self.pass_costs(batch)
                us, vs = direction_seeds(int(plan[k]), cfg.p1, blocks.p2)
                scalars[k] = split_scalars(self.model, batch, blocks.split, blocks.dirs1, blocks.dirs2, us, vs,
                                           cfg.eps, work, flops, weight_bytes, features, self.prefix)
                split_update(blocks.dirs1, blocks.dirs2, us, vs, scalars[k], cfg.lr, work)
        return {"scalars": scalars}

    def pass_costs(self, batch: Batch) -> tuple[tuple[float, float], tuple[float, float]]:
        """(FLOPs, weight bytes) of one block-1 and one block-2 pass on ``batch``, net of the frozen
        prefix (counted once per batch by ``prefix_features``): block 1 runs from the prefix's
        output, or when block 1 is frozen, block 2 does."""
        model, blocks, prefix = self.model, self.blocks, self.prefix
        block1 = model.forward_flops(batch, "block1", blocks.split)
        block2 = model.forward_flops(batch, "block2", blocks.split)
        if not prefix:
            return (block1, block2), blocks.weight_bytes
        if not blocks.dirs1.numel:
            return (0.0, model.forward_flops(batch, "block2", prefix)), (0.0, self.weight_bytes - self.prefix_weight_bytes)
        return ((block1 - model.forward_flops(batch, "block1", prefix), block2),
                (blocks.weight_bytes[0] - self.prefix_weight_bytes, blocks.weight_bytes[1]))

    def held_bytes(self):
        """The two cached block-1 outputs and both blocks' direction buffers."""
        shape = (self.cfg.batch_size, self.data.train.max_length)
        blocks = self.blocks
        return 2 * cached_output_bytes(self.model, *shape) + blocks.dirs1.buffer_bytes + blocks.dirs2.buffer_bytes
