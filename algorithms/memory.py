"""The memory model: one rule for every method's peak on a device, so methods differ only in the
parts they override (``activation_bytes``, ``held_bytes``)."""
from __future__ import annotations

from edgefed.algorithms.data import FederatedData
from edgefed.algorithms.models import TaskModel, inference_activation_bytes, prefix_output_bytes
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
