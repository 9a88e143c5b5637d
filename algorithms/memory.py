"""The memory model: one rule for every method's peak on a device, so methods differ only in the
parts they override (``activation_bytes``, ``held_bytes``); and ``measured_peak_bytes``, the host measurement that
checks it (tests/test_memory_model.py, bench/memory_model.py)."""
from __future__ import annotations

import weakref
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from edgefed.algorithms.data import FederatedData
from edgefed.algorithms.models import TaskModel, inference_activation_bytes, param_bytes, prefix_output_bytes
from edgefed.algorithms.spec import MethodSpec
from edgefed.algorithms.zo import Directions


class MemoryModel:
    """Mixed into ``Algorithm``: its ``model``, ``data``, ``cfg``, frozen ``prefix``, directions
    (``dirs``) and ``weight_bytes`` (``CountedPasses``) are set there."""

    model: TaskModel
    data: FederatedData
    cfg: MethodSpec
    prefix: int
    dirs: Directions | None
    weight_bytes: float

    def peak_memory_bytes(self) -> int:
        """The method's peak on a device: all weights, the activations its passes keep at the
        largest batch, the frozen prefix's output and what the method itself holds (``held_bytes``)."""
        return (int(self.weight_bytes) + self.activation_bytes() + self.prefix_memory_bytes()
                + self.held_bytes())

    def activation_bytes(self) -> int:
        """Inference-level activations (a no-grad forward, one layer live at a time)."""
        return inference_activation_bytes(self.model, self.cfg.batch_size, self.data.train.max_length)

    def held_bytes(self) -> int:
        """Buffers beyond weights and activations: a ZO method's direction buffer by default."""
        return self.dirs.buffer_bytes if self.dirs is not None else 0

    def prefix_memory_bytes(self) -> int:
        """Holding a batch's frozen-prefix output for the step's passes."""
        if not self.prefix:
            return 0
        return prefix_output_bytes(self.model, self.cfg.batch_size, self.data.train.max_length, self.prefix)


class PeakLiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created and alive inside the block (every op's outputs are
    tracked by storage until their last tensor dies); storages alive before, e.g. the weights,
    are not counted. A host measurement that does not depend on the allocator."""

    def __init__(self, existing: list[torch.Tensor]):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in existing}
        self.refs: Counter = Counter()
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        key = t.untyped_storage().data_ptr()
        if key == 0 or key in self.skip:
            return
        if self.refs[key] == 0:
            self.sizes[key] = t.untyped_storage().nbytes()
            self.live += self.sizes[key]
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.refs[key]


def measured_peak_bytes(model: torch.nn.Module, step: Callable[[], object]) -> int:
    """The model's weights plus the peak of tensors ``step`` creates and keeps alive at once
    (``PeakLiveBytes``; the model's buffers are neither tracked nor counted): what a device
    running ``step`` must hold, to set against the declared ``peak_memory_bytes``."""
    held = list(model.parameters()) + list(model.buffers())
    with PeakLiveBytes(held) as tracker:
        step()
    return param_bytes(model.parameters()) + tracker.peak
