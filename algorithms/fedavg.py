"""FedAvg with backprop (McMahan et al. 2017): the first-order reference.

What differs from the MeZO step: the gradient comes from one forward + backward instead of two
forwards, and SGD or Adam (a fresh optimizer each round) applies it. The price is memory: the
device holds gradients, optimizer state and every activation kept for the backward pass.
"""
from __future__ import annotations


import torch

from edgefed.algorithms.data import sample_batch
from edgefed.algorithms.delta import WeightDelta
from edgefed.algorithms.models import param_bytes, training_activation_bytes
from edgefed.algorithms.registry import FedAvgSpec

# per optimizer: class, parameter-sized tensors it holds across steps (Adam: two moments), those
# its step alone materialises (Adam: the denominator), tensors an update touches
OPTIMIZERS = {"sgd": (torch.optim.SGD, 0, 0, 3), "adam": (torch.optim.Adam, 2, 1, 7)}


class FedAvg(WeightDelta):
    name = "fedavg"
    cfg: FedAvgSpec

    def __init__(self, model, data, cfg, seed):
        super().__init__(model, data, cfg, seed)
        for p in self.trainable.params:
            p.requires_grad_(True)

    def local_steps(self, client, round, work):
        cfg = self.cfg
        rng = self.batch_rng(client, round)
        optim_cls, _, _, touched = OPTIMIZERS[cfg.optimizer]
        optimizer = optim_cls(self.trainable.params, lr=cfg.lr)
        for _ in range(cfg.local_steps):
            batch = self.data.train.batch(sample_batch(self.data.parts[client], cfg.batch_size, rng))
            loss = self.counted_loss(batch, work)  # the frozen prefix, if any, runs here once
            # backprop stops at the first trainable layer: the measured backward is that part's
            # (measured first: measuring runs a backward of its own)
            work.add("backward", self.model.forward_flops(batch, "train") - self.model.forward_flops(batch, "full"),
                     2 * (self.weight_bytes - self.prefix_weight_bytes))
            optimizer.zero_grad(set_to_none=True)
            loss().backward()
            optimizer.step()
            work.add_elementwise(self.trainable.numel, self.trainable.params[0].element_size(), touched)
        optimizer.zero_grad(set_to_none=True)

    def activation_bytes(self):
        """The larger of what the backward pass keeps (activations above the frozen prefix) and
        what the optimizer's step materialises: the step runs after the backward has freed them."""
        layers = self.model.num_layers - self.prefix
        in_layers = {id(p) for layer in self.model.layers for p in layer.parameters()}
        linears_train = any(id(p) in in_layers and "lora_" not in n for n, p in zip(self.trainable.names,
                                                                                     self.trainable.params))
        kept = training_activation_bytes(self.model, self.cfg.batch_size, self.data.train.max_length, layers,
                                         linears_train)
        return max(kept, param_bytes(self.trainable.params) * OPTIMIZERS[self.cfg.optimizer][2])

    def held_bytes(self):
        """The starting copy, gradients and the optimizer's state across steps, each trainable-sized."""
        return param_bytes(self.trainable.params) * (2 + OPTIMIZERS[self.cfg.optimizer][1])
