"""Aggregation rules as pure functions of the uploads (and, where a rule weights clients, their
example counts): what each method's ``aggregate`` hook applies."""
from __future__ import annotations

import numpy as np


def data_weights(counts: list[int]) -> np.ndarray:
    """Clients weighted by their number of examples (FedAvg's rule), summing to 1."""
    weights = np.asarray(counts, dtype=np.float64)
    return weights / weights.sum()


def mean(arrays: list[np.ndarray], dtype=np.float32) -> np.ndarray:
    """The unweighted mean, accumulated in float64 (DeComFL/FedSPZO: every client ran the same
    shared directions, so their scalars average per direction)."""
    return np.stack(arrays).astype(np.float64).mean(0).astype(dtype)


def weighted_sparse_sum(indices: list[np.ndarray], values: list[np.ndarray], weights: np.ndarray,
                        size: int) -> np.ndarray:
    """``sum_c w_c * v_c`` scattered onto ``size`` slots (FedKSeed: per-seed scalar sums over a
    pool of ``size`` seeds), in float64."""
    total = np.zeros(size)
    for w, idx, val in zip(weights, indices, values):
        np.add.at(total, idx.astype(np.int64), w * val.astype(np.float64))
    return total
