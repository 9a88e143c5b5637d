"""Builders shared by tests: a tiny model with data, without the engine."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from algorithms.base import FederatedData, init_prototype_head
from algorithms.data import TextDataset, Tokenized, partition
from algorithms.models import TaskModel, load_backbone

TEXTS = ["a gripping , funny and moving film", "dull , lifeless and far too long", "a small gem",
         "the plot makes no sense at all", "wonderful performances all round", "a tedious mess",
         "smart and heartfelt", "i wanted my two hours back", "bright , brisk entertainment",
         "flat jokes and wooden acting", "an absolute delight", "nothing works here"] * 4


def tiny_setup(seed: int = 0, dtype=torch.float32, num_clients: int = 4):
    backbone, tokenizer, kind = load_backbone("tiny-bert", "encoder", "fp32", seed)
    model = TaskModel(backbone, tokenizer, kind, 2).to(dtype)
    labels = np.array([i % 2 == 0 for i in range(len(TEXTS))], dtype=np.int64)
    data = TextDataset(list(TEXTS), labels, ["0", "1"], "inline")
    tok = Tokenized(data, tokenizer, 16)
    init_prototype_head(model, tok, labels, 3, seed)
    parts = partition(labels, num_clients, "iid", seed)
    return model, FederatedData(tok, parts, tok)


def zo_cfg(**kw):
    base = dict(lr=1e-2, eps=1e-3, local_steps=2, batch_size=4, perturbations=2, distribution="gaussian",
                cache_z=False, trainable="all")
    base.update(kw)
    return SimpleNamespace(**base)
