"""Held-out evaluation: accuracy and loss of the global model, the figures a run reports."""
from __future__ import annotations

import torch

from edgefed.algorithms.models import TaskModel, Tokenized


@torch.no_grad()
def evaluate(model: TaskModel, test: Tokenized, batch_size: int = 64) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on the held-out set (from its feature cache when it has one)."""
    correct, total_loss = 0, 0.0
    for batch in test.batches(batch_size):
        cache = batch.cache
        logits = (model.suffix_logits(cache.lookup(batch), batch, cache.split) if cache else model.logits(batch)).float()
        total_loss += float(torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
        correct += int((logits.argmax(-1) == batch.labels).sum())
    return correct / len(test), total_loss / len(test)
