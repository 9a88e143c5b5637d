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

Pooled vectors (only the head trains) also persist across runs in a ``FeatureStore``: a chunk's
file is named by a hash of everything its vectors depend on, so the next run of the same model on
the same data (a re-run, a sweep's next point, a benchmark's next method) reads what the last one
computed instead of running the frozen encoder again. Per-token states are not stored: they are
hundreds of times larger.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edgefed.algorithms.gguf import cache_dir
from edgefed.algorithms.models import Batch, TaskModel, Tokenized
from edgefed.devices.profile import host_cpu

CHUNK = 64  # examples per prefix pass while filling
STORE_ENV = "EDGEFED_FEATURE_STORE"
STORE_FORMAT = b"edgefed-features/1"


class FeatureStore:
    """A folder of pooled prefix vectors, one file per chunk, shared by every run of the user.

    The key hashes the backbone's weights and buffers, its config, the code that computes the
    vectors (this module and models.py), torch's version, the device and the CPU, and the chunk's
    token ids and mask: a file can only be read by a run that would compute the same bits. Files
    are written atomically; one that cannot be read is computed again and rewritten."""

    def __init__(self, folder: Path, model: TaskModel):
        self.folder, self.writable = folder, True
        digest = hashlib.sha256(STORE_FORMAT)
        for source in (Path(__file__), Path(sys.modules[TaskModel.__module__].__file__)):
            digest.update(source.read_bytes())
        device = next(model.parameters()).device
        digest.update(repr((torch.__version__, str(device), torch.cuda.get_device_name(device)
                            if device.type == "cuda" else "", platform.machine(), host_cpu(), model.kind,
                            model.backbone.config.to_json_string())).encode())
        for name, tensor in model.backbone.state_dict().items():
            digest.update(name.encode() + str((tensor.dtype, tuple(tensor.shape))).encode())
            digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
        self.model_key = digest.digest()

    @staticmethod
    def default() -> Path | None:
        """``$EDGEFED_FEATURE_STORE`` (``off``: none), else ``features/`` in the edgefed cache folder."""
        value = os.environ.get(STORE_ENV)
        if value == "off":
            return None
        return Path(value).expanduser() if value else cache_dir() / "features"

    def path(self, batch: Batch) -> Path:
        digest = hashlib.sha256(self.model_key)
        for tensor in (batch.input_ids, batch.attention_mask):
            digest.update(str(tuple(tensor.shape)).encode() + tensor.cpu().numpy().tobytes())
        return self.folder / f"{digest.hexdigest()}.safetensors"

    def load(self, path: Path, rows: int) -> torch.Tensor | None:
        """The chunk's vectors, or None if they are not stored (or cannot be read)."""
        try:
            features = load_file(path)["features"]
        except (OSError, SafetensorError, KeyError):
            return None
        return features if features.shape[0] == rows else None

    def save(self, path: Path, features: torch.Tensor) -> None:
        if not self.writable:
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_file({"features": features.detach().cpu().contiguous()}, tmp)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk costs host seconds, never the run: said once
            with contextlib.suppress(OSError):
                tmp.unlink()
            print(f"warning: {STORE_ENV}: cannot write {self.folder}: {exc.strerror or exc}; features not kept",
                  file=sys.stderr)
            self.writable = False


class FeatureCache:
    """``prefix_features`` at ``split`` for every example of ``data``, filled chunk by chunk."""

    def __init__(self, model: TaskModel, data: Tokenized, split: int, store: FeatureStore | None = None):
        self.model, self.data, self.split = model, data, split
        self.threads = torch.get_num_threads()
        self.pooled = split >= model.num_layers
        self.store = store if self.pooled else None
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
        path = self.store.path(batch) if self.store is not None else None
        features = self.store.load(path, len(indices)) if path is not None else None
        if features is not None:
            features = features.to(batch.input_ids.device)
        else:
            stepping = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                features = self.model.prefix_features(batch, self.split)
            finally:
                torch.set_num_threads(stepping)
            if path is not None:
                self.store.save(path, features)
        for j, i in enumerate(indices):
            self.rows[i] = features[j].clone() if self.pooled else features[j, : len(self.data.ids[i])].clone()


def attach_feature_caches(model: TaskModel, split: int, sets: dict[str, Tokenized], budget_bytes: int,
                          store: Path | None = None) -> int:
    """Give each named dataset a cache of the prefix's output while the whole set fits the budget
    (held-out set first: every evaluation reads all of it); a set that does not fit is recomputed
    per pass, said once on stderr. Pooled vectors persist in ``store`` (a folder) when given.
    Returns the bytes the caches will hold when full."""
    if split == 0:
        return 0
    shared = FeatureStore(store, model) if store is not None and split >= model.num_layers else None
    held = 0
    for name, data in sets.items():
        size = FeatureCache.size_bytes(model, data, split)
        if held + size > budget_bytes:
            if budget_bytes > 0:
                print(f"warning: host.feature_cache_bytes: the frozen layers' outputs for the {name} set need "
                      f"{size / 2**20:.0f} MiB, {budget_bytes / 2**20:.0f} MiB allowed ({held / 2**20:.0f} MiB "
                      f"used); recomputing them instead", file=sys.stderr)
            continue
        data.features = FeatureCache(model, data, split, shared)
        held += size
    return held
