"""The host's feature cache: a frozen prefix's output per example, computed once per run.

A frozen prefix (``TaskModel.frozen_prefix``) gives the same output for an example in every round,
for every client and every evaluation, so the host computes it once and reuses it. This saves
host seconds only: the methods still count the prefix once per batch, as a device would run it.

Examples are computed in fixed chunks of similar length (so little of a chunk's pass is padding),
never in the batch that first asks for them, so what is cached does not depend on the order in
which clients or workers use it. Per-token
states are kept trimmed to each example's length and zero-padded to the asking batch's length:
padded positions are masked out of attention and pooling, so the real positions equal the
uncached path up to float rounding for any batch composition.

A chunk is filled with the torch threads the process had when the cache was made (all cores, or
OMP_NUM_THREADS, unless a worker was given its share): 64 examples are work enough for several
threads, unlike a client's batch of 16, which the run steps on ``host.threads``. The thread count
does not change the files (``bench/thread_determinism.py``).
"""
from __future__ import annotations

import sys

import torch

from edgefed.algorithms.data import Tokenized
from edgefed.algorithms.models import Batch, TaskModel

CHUNK = 64  # examples per prefix pass while filling


class FeatureCache:
    """``prefix_features`` at ``split`` for every example of ``data``, filled chunk by chunk."""

    def __init__(self, model: TaskModel, data: Tokenized, split: int):
        self.model, self.data, self.split = model, data, split
        self.threads = torch.get_num_threads()
        self.pooled = split >= model.num_layers
        self.rows: list[torch.Tensor | None] = [None] * len(data)
        order = sorted(range(len(data)), key=lambda i: (len(data.ids[i]), i))
        self.chunks = [order[start: start + CHUNK] for start in range(0, len(order), CHUNK)]
        self.chunk_of = {i: c for c, members in enumerate(self.chunks) for i in members}

    @staticmethod
    def size_bytes(model: TaskModel, data: Tokenized, split: int) -> int:
        """What caching all of ``data`` holds: a vector per example or per real token."""
        vectors = len(data) if split >= model.num_layers else sum(len(ids) for ids in data.ids)
        return vectors * model.backbone.config.hidden_size * next(model.parameters()).element_size()

    def lookup(self, batch: Batch) -> torch.Tensor:
        for chunk in sorted({self.chunk_of[i] for i in batch.rows if self.rows[i] is None}):
            self._fill(chunk)
        if self.pooled:
            return torch.stack([self.rows[i] for i in batch.rows])
        size, length = batch.shape
        out = self.rows[batch.rows[0]].new_zeros((size, length, self.rows[batch.rows[0]].shape[-1]))
        for j, i in enumerate(batch.rows):
            out[j, : len(self.rows[i])] = self.rows[i]
        return out

    @torch.no_grad()
    def _fill(self, chunk: int) -> None:
        indices = self.chunks[chunk]
        batch = self.data.batch(indices, cached=False, bucket=False)  # similar lengths: little padding
        stepping = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            features = self.model.prefix_features(batch, self.split)
        finally:
            torch.set_num_threads(stepping)
        for j, i in enumerate(indices):
            self.rows[i] = features[j].clone() if self.pooled else features[j, : len(self.data.ids[i])].clone()


def attach_feature_caches(model: TaskModel, split: int, sets: dict[str, Tokenized], budget_bytes: int) -> int:
    """Give each named dataset a cache of the prefix's output while the whole set fits the budget
    (held-out set first: every evaluation reads all of it); a set that does not fit is recomputed
    per pass, said once on stderr. Returns the bytes the caches will hold when full."""
    if split == 0:
        return 0
    held = 0
    for name, data in sets.items():
        size = FeatureCache.size_bytes(model, data, split)
        if held + size > budget_bytes:
            if budget_bytes > 0:
                print(f"warning: host.feature_cache_bytes: the frozen layers' outputs for the {name} set need "
                      f"{size / 2**20:.0f} MiB, {budget_bytes / 2**20:.0f} MiB allowed ({held / 2**20:.0f} MiB "
                      f"used); recomputing them instead", file=sys.stderr)
            continue
        data.features = FeatureCache(model, data, split)
        held += size
    return held
