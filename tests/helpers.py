"""Builders shared by tests: a tiny model with data, without the engine; the command line run in
this process."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from types import SimpleNamespace

import numpy as np
import torch
from typer.testing import CliRunner

from edgefed.algorithms.data import FederatedData, TextDataset, partition
from edgefed.algorithms.models import TaskModel, Tokenized, load_backbone
from edgefed.algorithms.prototype import init_prototype_head

def edgefed(*args, cwd=None) -> subprocess.CompletedProcess:
    """``edgefed ARGS`` in this process (a fresh interpreter pays seconds of torch imports), with
    what a subprocess would show: its exit code, stdout, and stderr with any uncaught exception's
    traceback, so tests that forbid tracebacks still see them. The torch thread count a scenario's
    ``host.threads`` sets is restored afterwards. ``console_script`` runs the real process."""
    from edgefed.cli import app

    args = [str(a) for a in args]
    threads = torch.get_num_threads()
    try:
        with contextlib.chdir(cwd or os.getcwd()):
            result = CliRunner().invoke(app, args, prog_name="edgefed")
    finally:
        torch.set_num_threads(threads)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["edgefed", *args], result.exit_code, result.stdout, stderr)


def console_script(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m edgefed ARGS`` in a fresh interpreter: for what only a real process shows."""
    return subprocess.run([sys.executable, "-m", "edgefed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


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
