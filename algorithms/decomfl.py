"""DeComFL (Li et al., ICLR 2025; arXiv 2405.15861): dimension-free ZO federated learning.

What differs from the plain MeZO step: the *server* draws one seed per local step each round,
shared by every sampled client; a client uploads only its scalars (steps x perturbations fp32);
the server averages them per (step, perturbation), keeps the (seed, scalar) history, and a client
that pulls the model replays every record since it last took part. Bytes do not grow with the
model.
"""
from __future__ import annotations

import numpy as np
import torch

from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.message import Message
from edgefed.algorithms.zo import Directions, derive_seed, replay, two_point_scalar
from edgefed.algorithms.work import Work

SEED_DTYPE = np.uint32  # 4-byte seeds on the wire
SCALAR_DTYPE = np.float32


class DeComFL(Algorithm):
    name = "decomfl"

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.make_directions()
        self.history: list[tuple[int, np.ndarray, np.ndarray]] = []  # (round, seeds[K,P], gbar[K,P])
        self.initial = self.trainable.snapshot()  # w0 of the trainable subset (head is new)
        self.round_seeds: np.ndarray | None = None

    def make_directions(self) -> None:
        self.dirs = Directions(self.trainable.params, self.cfg.distribution, self.cfg.cache_z)

    def replay_step(self, seeds: np.ndarray, scalars: np.ndarray, work: Work | None = None) -> None:
        """Move the model by one local step's records: ``-lr/P * sum_p g_p z(seed_p)``."""
        replay(self.dirs, seeds, scalars, self.cfg.lr / self.cfg.perturbations, work)

    def charge_replay(self, work: Work, steps: int) -> None:
        """The RNG and parameter passes of replaying ``steps`` local steps (one axpy per record)."""
        replays = steps * self.cfg.perturbations
        work.add_rng(replays * self.dirs.numel, self.dirs.distribution, self.dirs.elem_bytes)
        work.add_elementwise(replays * self.dirs.numel, self.dirs.elem_bytes, tensors_touched=3)

    # -- server --------------------------------------------------------------------------
    def configure_round(self, round, selected):
        """One seed per local step, shared by all sampled clients; perturbation p of step k
        uses ``seed_k`` itself for p = 0 and ``derive(seed_k, p)`` after, so one seed per step
        goes on the wire."""
        steps, perts = self.cfg.local_steps, self.cfg.perturbations
        self.round = round
        step_seeds = [derive_seed(self.seed, 2, round, k) for k in range(steps)]
        self.round_seeds = np.array([[s if p == 0 else derive_seed(s, p) for p in range(perts)]
                                     for s in step_seeds], dtype=SEED_DTYPE)

    def catch_up(self, client, last_round, round):
        """Records since ``last_round`` (seeds + averaged scalars), plus this round's step seeds.
        A first-time client also downloads the initial head (the only weights it lacks)."""
        records = [r for r in self.history if last_round is None or r[0] > last_round]
        arrays = {"round_seeds": self.round_seeds[:, 0].copy()}  # one seed per step on the wire
        if records:
            arrays["history_seeds"] = np.concatenate([r[1][:, 0] for r in records]).astype(SEED_DTYPE)
            arrays["history_scalars"] = np.concatenate([r[2].ravel() for r in records]).astype(SCALAR_DTYPE)
        if last_round is None:
            for name, tensor in zip(self.trainable.names, self.initial):
                if name.startswith("head."):
                    arrays[name] = tensor.cpu().numpy()
        work = Work()
        self.charge_replay(work, sum(len(seeds) for _, seeds, _ in records))
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message("history", round, client, arrays), work

    def aggregate(self, messages):
        if not messages:
            return None
        scalars = np.stack([m.arrays["scalars"] for m in messages]).astype(np.float64)
        return scalars.mean(0).astype(SCALAR_DTYPE)

    def apply(self, update):
        if update is None:
            return
        for seeds, scalars in zip(self.round_seeds, update):
            self.replay_step(seeds, scalars)
        self.history.append((self.round, self.round_seeds.copy(), update.copy()))

    # -- client --------------------------------------------------------------------------
    def client_update(self, client, round):
        cfg, work = self.cfg, Work()
        rng = self.batch_rng(client, round)
        part = self.data.parts[client]
        start = self.trainable.snapshot()
        scalars = np.zeros((cfg.local_steps, cfg.perturbations), dtype=SCALAR_DTYPE)
        with torch.no_grad():
            for k in range(cfg.local_steps):
                loss = self.counted_loss(self.data.train.batch(sample_batch(part, cfg.batch_size, rng)), work)
                for p in range(cfg.perturbations):
                    scalars[k, p] = two_point_scalar(loss, self.dirs, int(self.round_seeds[k, p]), cfg.eps, work)
                self.replay_step(self.round_seeds[k], scalars[k], work)
        self.trainable.restore(start)  # the host model stays the global model
        work.peak_memory_bytes = self.peak_memory_bytes()
        return Message("seed-scalars", round, client, {"scalars": scalars}), work

    def state(self):
        """The (round, seeds, scalars) history as stacked arrays (records share one shape)."""
        if not self.history:
            return {"history_rounds": np.zeros(0, dtype=np.int64)}
        return {"history_rounds": np.array([r for r, _, _ in self.history], dtype=np.int64),
                "history_seeds": np.stack([s for _, s, _ in self.history]),
                "history_scalars": np.stack([g for _, _, g in self.history])}

    def load_state(self, state):
        rounds = state["history_rounds"]
        self.history = [(int(r), state["history_seeds"][i].copy(), state["history_scalars"][i].copy())
                        for i, r in enumerate(rounds)]
