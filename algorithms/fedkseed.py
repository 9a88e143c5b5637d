"""FedKSeed and FedKSeed-Pro (Qin et al., ICML 2024; arXiv 2312.06353).

What differs from the plain MeZO step: every direction comes from a fixed pool of K seeds shared
from the start (default 4096), one perturbation per local step; a client uploads, per seed it
used, the sum of its scalars; the server averages these sparse pools (weighted by client data
size) and moves the model with one replay per seed used. A catching-up client downloads the
per-seed sums since it last took part, so it replays at most K directions however long it was
away. FedKSeed-Pro draws seeds with probabilities softmax(min-max-normalised mean |scalar|) of
each seed's aggregated history, sent with the download.
"""
from __future__ import annotations


import numpy as np
import torch

from edgefed.algorithms.aggregation import data_weights, upload_weights, weighted_sparse_sum
from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.history import History
from edgefed.algorithms.registry import FedKSeedSpec
from edgefed.algorithms.zo import Directions, derive_seed, two_point_scalar
from edgefed.streams import Stream

INDEX_DTYPE = np.uint16  # pool indices on the wire (K <= 65536)
SCALAR_DTYPE = np.float32


class FedKSeed(Algorithm):
    name = "fedkseed"
    cfg: FedKSeedSpec
    download_kind = "history"
    upload_kind = "seed-scalars"

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        self.dirs = Directions(self.trainable.params, cfg.distribution, cfg.cache_z)
        self.pool = [derive_seed(seed, Stream.SEED_POOL, k) for k in range(cfg.pool_size)]
        self.history = History(self.trainable.names, self.trainable.params)  # averaged per-seed sums [K]
        self.abs_sum = np.zeros(cfg.pool_size)
        self.uses = np.zeros(cfg.pool_size)

    def probabilities(self) -> np.ndarray | None:
        """FedKSeed-Pro's seed distribution (None: uniform)."""
        if not self.cfg.pro:
            return None
        mean = self.abs_sum / np.maximum(self.uses, 1)
        spread = mean.max() - mean.min()
        norm = (mean - mean.min()) / spread if spread > 0 else np.zeros_like(mean)
        weights = np.exp(norm - norm.max())
        return weights / weights.sum()

    def download(self, last_round, round, plan, work):
        """The per-seed sums since ``last_round`` (one replay per seed used), FedKSeed-Pro's seed
        probabilities, and the initial head if the client never synced."""
        sums = np.zeros(self.cfg.pool_size, dtype=np.float64)
        for record in self.history.since(last_round):
            sums += record["updates"]
        used = np.flatnonzero(sums)
        arrays = {"indices": used.astype(INDEX_DTYPE), "scalars": sums[used].astype(SCALAR_DTYPE)}
        probs = self.probabilities()
        if probs is not None:
            arrays["probabilities"] = probs.astype(np.float32)
        if last_round is None:
            arrays.update(self.history.head)
        self.dirs.charge_axpy(work, len(used))
        return arrays

    def local_update(self, client, round, plan, work, start):
        cfg = self.cfg
        rng = self.batch_rng(client, round)
        probs = self.probabilities()
        sums: dict[int, float] = {}
        with torch.no_grad():
            for _ in range(cfg.local_steps):
                batch = self.data.train.batch(sample_batch(self.data.parts[client], cfg.batch_size, rng))
                loss = self.counted_loss(batch, work)
                index = int(rng.choice(cfg.pool_size, p=probs))
                g = two_point_scalar(loss, self.dirs, self.pool[index], cfg.eps, work)
                self.dirs.axpy(self.pool[index], -cfg.lr * float(g), work)
                sums[index] = sums.get(index, 0.0) + float(g)
        indices = np.array(sorted(sums), dtype=INDEX_DTYPE)
        return {"indices": indices, "scalars": np.array([sums[int(i)] for i in indices], dtype=SCALAR_DTYPE)}

    def upload_weight(self, message):
        """Clients count by their examples (FedKSeed's data-size weighting)."""
        return len(self.data.parts[message.client])

    def aggregate(self, messages):
        if not messages:
            return None
        weights = data_weights(upload_weights(messages, self.upload_weight))
        return weighted_sparse_sum([m.arrays["indices"] for m in messages], [m.arrays["scalars"] for m in messages],
                                   weights, self.cfg.pool_size).astype(SCALAR_DTYPE)

    def fold(self, messages, plans, scales, version):
        """FedBuff on per-seed sums: their data-size weighted sum, each scaled by its staleness
        weight and the server step, replayed on the current model (the asynchronous approximation)."""
        weights = self.fold_weights(messages, scales)
        update = weighted_sparse_sum([m.arrays["indices"] for m in messages], [m.arrays["scalars"] for m in messages],
                                     weights, self.cfg.pool_size).astype(SCALAR_DTYPE)
        self.apply(update, version, None)

    def update_arrays(self, update):
        """The pool's seeds with a non-zero mean, as a client names the seeds it used."""
        used = np.flatnonzero(update)
        return {"indices": used.astype(INDEX_DTYPE), "scalars": update[used]}

    def apply(self, update, round, plan):
        if update is None:
            return
        used = np.flatnonzero(update)
        for index in used:
            self.dirs.axpy(self.pool[index], -self.cfg.lr * float(update[index]))
        self.abs_sum[used] += np.abs(update[used])
        self.uses[used] += 1
        self.history.add(round, updates=update)

    def state(self):
        return {"abs_sum": self.abs_sum, "uses": self.uses, **self.history.state()}

    def load_state(self, state):
        self.abs_sum, self.uses = state["abs_sum"].copy(), state["uses"].copy()
        self.history.load_state({k: v for k, v in state.items() if k.startswith("history_")})
