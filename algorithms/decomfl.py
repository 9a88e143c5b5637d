"""DeComFL (Li et al., ICLR 2025; arXiv 2405.15861): dimension-free ZO federated learning.

What differs from the plain MeZO step: the *server* draws one seed per local step each round,
shared by every sampled client; a client uploads only its scalars (steps x perturbations fp32);
the server averages them per (step, perturbation), keeps the (seed, scalar) history, and a client
that pulls the model replays every record since it last took part. Bytes do not grow with the
model.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from edgefed.algorithms.aggregation import mean, upload_weights
from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.history import History
from edgefed.algorithms.registry import DeComFLSpec
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, derive_seed, replay, two_point_scalar
from edgefed.streams import Stream

SEED_DTYPE = np.uint32  # 4-byte seeds on the wire
SCALAR_DTYPE = np.float32


class SharedSeedServer(Algorithm):
    """DeComFL's server, which FedSPZO shares with its wire format: one seed per local step each
    round for every sampled client, their scalars averaged per direction, kept as history and
    replayed by a client that catches up. A method says how one step's records move the model
    (``replay_step``) and what replaying a number of steps costs (``charge_replay``)."""

    download_kind = "history"
    upload_kind = "seed-scalars"

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.history = History(self.trainable.names, self.trainable.params)  # seeds[K], scalars[K, ...]

    @abstractmethod
    def replay_step(self, step_seed: int, scalars: np.ndarray, work: Work | None = None) -> None:
        """Move the model by one local step's records."""

    @abstractmethod
    def charge_replay(self, work: Work, steps: int) -> None:
        """What replaying ``steps`` local steps' records costs a device."""

    def configure_round(self, round, selected):
        """The plan: one seed per local step, shared by all sampled clients."""
        seeds = [derive_seed(self.seed, Stream.ROUND_SEEDS, round, k) for k in range(self.cfg.local_steps)]
        return np.array(seeds, dtype=SEED_DTYPE)

    def download(self, last_round, round, plan, work):
        """This round's step seeds, every record since ``last_round`` (one seed per step and its
        averaged scalars), and the initial head if the client never synced."""
        records = self.history.since(last_round)
        arrays = {"round_seeds": plan.astype(SEED_DTYPE)}
        if records:
            arrays["history_seeds"] = np.concatenate([r["seeds"] for r in records]).astype(SEED_DTYPE)
            arrays["history_scalars"] = np.concatenate([r["scalars"].ravel() for r in records]).astype(SCALAR_DTYPE)
        if last_round is None:
            arrays.update(self.history.head)
        self.charge_replay(work, sum(len(r["seeds"]) for r in records))
        return arrays

    def aggregate(self, messages):
        """Every client ran the same shared directions, so their scalars average per direction (each
        client counts 1; an edge's partial mean counts its clients)."""
        if not messages:
            return None
        return mean([m.arrays["scalars"] for m in messages], upload_weights(messages, lambda m: 1), SCALAR_DTYPE)

    def update_arrays(self, update):
        return {"scalars": update}

    def fold(self, messages, plans, scales, version):
        """FedBuff on seed records: each update keeps its own step seeds (its start version's plan)
        and its scalars times its coefficient (every client counts 1: ``scales_i / K``), computed at
        an older model and replayed on the current one - the asynchronous approximation. The
        version's history record is their concatenation, so a catching-up download stays exact."""
        weights = self.fold_weights(messages, scales)
        seeds = np.concatenate([np.asarray(plan, dtype=SEED_DTYPE) for plan in plans])
        scalars = np.concatenate([(m.arrays["scalars"].astype(np.float64) * w).astype(SCALAR_DTYPE)
                                  for m, w in zip(messages, weights)])
        self.apply(scalars, version, seeds)

    def apply(self, update, round, plan):
        """Replay each step's averaged scalars on the global model, then keep them for clients
        that catch up later."""
        if update is None:
            return
        for step_seed, scalars in zip(plan, update):
            self.replay_step(int(step_seed), scalars)
        self.history.add(round, seeds=plan, scalars=update)

    def state(self):
        return self.history.state()

    def load_state(self, state):
        self.history.load_state(state)


class DeComFL(SharedSeedServer):
    name = "decomfl"
    cfg: DeComFLSpec

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.dirs = Directions(self.trainable.params, cfg.distribution, cfg.cache_z)

    def perturbation_seeds(self, step_seed: int) -> list[int]:
        """Perturbation p of a step uses the step's seed itself for p = 0 and ``derive(seed, p)``
        after, so one seed per step goes on the wire."""
        return [step_seed if p == 0 else derive_seed(step_seed, p) for p in range(self.cfg.perturbations)]

    def replay_step(self, step_seed, scalars, work=None):
        """``-lr/P * sum_p g_p z(seed_p)``."""
        replay(self.dirs, self.perturbation_seeds(step_seed), scalars, self.cfg.lr / self.cfg.perturbations, work)

    def charge_replay(self, work, steps):
        self.dirs.charge_axpy(work, steps * self.cfg.perturbations)

    def local_update(self, client, round, plan, work, start):
        cfg = self.cfg
        rng = self.batch_rng(client, round)
        part = self.data.parts[client]
        scalars = np.zeros((cfg.local_steps, cfg.perturbations), dtype=SCALAR_DTYPE)
        with torch.no_grad():
            for k in range(cfg.local_steps):
                loss = self.counted_loss(self.data.train.batch(sample_batch(part, cfg.batch_size, rng)), work)
                for p, z_seed in enumerate(self.perturbation_seeds(int(plan[k]))):
                    scalars[k, p] = two_point_scalar(loss, self.dirs, z_seed, cfg.eps, work)
                self.replay_step(int(plan[k]), scalars[k], work)
        return {"scalars": scalars}
