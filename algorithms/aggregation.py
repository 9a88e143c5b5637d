"""Aggregation rules as pure functions of the uploads (and, where a rule weights clients, their
example counts): what each method's ``aggregate`` hook applies.

Every rule is a weighted mean, so it splits into two tiers (hierarchical aggregation): an edge
server averages its cell's uploads and forwards that mean with the total weight it stands for
(``partial_message``); the server's mean of such messages, each weighted by its total, is the
mean over all the uploads (a count-weighted mean of means), equal to the flat one up to float
rounding.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgefed.algorithms.message import Message

WEIGHT = "weight"  # the array of an edge's partial aggregate that holds the total weight it stands for


def upload_weights(messages: list[Message], own: Callable[[Message], int]) -> np.ndarray:
    """Each message's weight in the mean: a client upload's ``own`` (1, or its examples) or, for an
    edge's partial aggregate, the total weight of the uploads it averages."""
    return np.array([int(m.arrays[WEIGHT][0]) if WEIGHT in m.arrays else own(m) for m in messages], dtype=np.int64)


def partial_message(arrays: dict[str, np.ndarray], weight: int, round: int, edge: int) -> Message:
    """An edge server's one upload: its cell's mean in the method's upload layout, and its weight."""
    return Message("partial", round, edge, {**arrays, WEIGHT: np.array([weight], dtype=np.int64)})


def data_weights(counts) -> np.ndarray:
    """Clients weighted by their number of examples (FedAvg's rule), summing to 1."""
    weights = np.asarray(counts, dtype=np.float64)
    return weights / weights.sum()


def mean(arrays: list[np.ndarray], weights: np.ndarray, dtype=np.float32) -> np.ndarray:
    """The weighted mean, accumulated in float64 (DeComFL/FedSPZO: every client ran the same
    shared directions, so their scalars average per direction; each client counts 1)."""
    stacked = np.stack(arrays).astype(np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, *[1] * (stacked.ndim - 1))
    return ((stacked * w).sum(0) / w.sum()).astype(dtype)


def weighted_sparse_sum(indices: list[np.ndarray], values: list[np.ndarray], weights: np.ndarray,
                        size: int) -> np.ndarray:
    """``sum_c w_c * v_c`` scattered onto ``size`` slots (FedKSeed: per-seed scalar sums over a
    pool of ``size`` seeds), in float64."""
    total = np.zeros(size)
    for w, idx, val in zip(weights, indices, values):
        np.add.at(total, idx.astype(np.int64), w * val.astype(np.float64))
    return total
