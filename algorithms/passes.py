"""Counting the forward passes a method runs: what each pass costs a device (FLOPs, weight bytes
read), with the frozen prefix (layers below the lowest trainable one) charged once per batch."""
from __future__ import annotations

import functools

from edgefed.algorithms.models import TaskModel, param_bytes
from edgefed.algorithms.work import Work


class CountedPasses:
    """Mixed into ``Algorithm``: its ``model`` and frozen ``prefix`` (layers) are set there."""

    model: TaskModel
    prefix: int

    def prefix_features(self, batch, work: Work):
        """The frozen prefix's output on ``batch`` (None when there is none), counted once: every
        perturbation of this batch starts from it. The host may take it from its feature cache;
        the device is charged for computing it."""
        if not self.prefix:
            return None
        work.add_forward("prefix", self.model.forward_flops(batch, "block1", self.prefix), self.prefix_weight_bytes)
        return self.model.prefix_features(batch, self.prefix)

    def counted_loss(self, batch, work: Work):
        """The loss on ``batch`` as a closure that charges one pass per call (the loss function every
        MeZO-style step evaluates at +eps z and -eps z): the full model, or with a frozen prefix
        only the layers from the first trainable one up, the prefix being charged once here."""
        if not self.prefix:
            flops, weight_bytes = self.model.forward_flops(batch, "full"), self.weight_bytes

            def loss():
                work.add_forward("full", flops, weight_bytes)
                return self.model.loss(batch)

            return loss
        features = self.prefix_features(batch, work)
        flops = self.model.forward_flops(batch, "block2", self.prefix)
        weight_bytes = self.weight_bytes - self.prefix_weight_bytes

        def suffix_loss():
            work.add_forward("suffix", flops, weight_bytes)
            return self.model.suffix_loss(features, batch, self.prefix)

        return suffix_loss

    @functools.cached_property
    def weight_bytes(self) -> float:
        """All weights: what one forward pass reads from memory (the parameter set is fixed once the
        method is built, so it is summed once)."""
        return float(param_bytes(self.model.parameters()))

    @functools.cached_property
    def prefix_weight_bytes(self) -> float:
        """The frozen prefix's weights: what computing its output reads."""
        names, _ = self.model.block_param_names(self.prefix)
        return float(param_bytes(p for n, p in self.model.named_parameters() if n in names)) if self.prefix else 0.0
