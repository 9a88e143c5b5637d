"""FedZO / FedMeZO (Fang et al. 2022; Ling et al. 2024): local MeZO steps, weight deltas on the wire.

What differs from the plain MeZO step: nothing in the step itself; each client draws its own
seeds (round, client, step, perturbation), runs ``local_steps`` MeZO steps and uploads the change
of its trainable weights; the server averages the deltas and clients download the new weights.
Bytes grow with the trainable subset, unlike DeComFL's.
"""
from __future__ import annotations


import torch

from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.delta import WeightDelta
from edgefed.algorithms.registry import FedZOSpec
from edgefed.algorithms.zo import Directions, derive_seed, two_point_scalar
from edgefed.streams import Stream


class FedZO(WeightDelta):
    name = "fedzo"
    cfg: FedZOSpec

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.dirs = Directions(self.trainable.params, cfg.distribution, cfg.cache_z)

    def local_steps(self, client, round, work):
        cfg = self.cfg
        rng = self.batch_rng(client, round)
        with torch.no_grad():
            for k in range(cfg.local_steps):
                batch = self.data.train.batch(sample_batch(self.data.parts[client], cfg.batch_size, rng))
                loss = self.counted_loss(batch, work)
                seeds = [derive_seed(self.seed, Stream.CLIENT_DIRECTIONS, round, client, k, p) for p in range(cfg.perturbations)]
                scalars = [two_point_scalar(loss, self.dirs, s, cfg.eps, work) for s in seeds]
                for s, g in zip(seeds, scalars):
                    self.dirs.axpy(s, -cfg.lr / cfg.perturbations * float(g), work)

