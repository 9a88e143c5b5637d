"""The encoder head's starting point: a nearest-prototype classifier from a few labelled examples,
so that round 0 measures zero-shot accuracy instead of a random head's."""
from __future__ import annotations

import numpy as np
import torch

from edgefed.algorithms.models import TaskModel, Tokenized
from edgefed.streams import Stream, rng


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
