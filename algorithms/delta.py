"""The round of full-weight methods (FedZO, FedAvg): download the trainable weights, run local
steps, upload the weight delta; the server averages deltas weighted by client data size."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from edgefed.algorithms.aggregation import data_weights, partial_message, upload_weights
from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.message import Message
from edgefed.algorithms.models import param_bytes
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import AXPY_TENSORS


def to_wire(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as the array sent: fp32/fp16 as such, bf16 as its raw 16-bit words."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def from_wire(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


class WeightDelta(Algorithm):
    download_kind = upload_kind = "weights"

    @abstractmethod
    def local_steps(self, client: int, round: int, work: Work) -> None:
        """Run the client's local steps in place on the trainable parameters."""

    def download(self, last_round, round, plan, work):
        """The current trainable weights (the frozen rest is held from the start)."""
        return {n: to_wire(p) for n, p in zip(self.trainable.names, self.trainable.params)}

    def local_update(self, client, round, plan, work, start):
        """The change of the trainable weights over the local steps."""
        self.local_steps(client, round, work)
        delta = {n: to_wire(p.detach() - s) for n, p, s in zip(self.trainable.names, self.trainable.params, start)}
        work.add_elementwise(self.trainable.numel, self.trainable.params[0].element_size(), AXPY_TENSORS)
        return delta

    def upload_weight(self, message):
        """Clients count by their examples (FedAvg's rule)."""
        return len(self.data.parts[message.client])

    def aggregate(self, messages):
        if not messages:
            return None
        return self.weighted_sum(messages, data_weights(upload_weights(messages, self.upload_weight)))

    def fold(self, messages, plans, scales, version):
        """FedBuff on weight deltas: their data-size weighted sum, each scaled by its staleness
        weight and the server step."""
        self.apply(self.weighted_sum(messages, self.fold_weights(messages, scales)), version, None)

    def weighted_sum(self, messages, weights):
        """``sum_i weights_i * delta_i`` per tensor, accumulated in fp32."""
        update = []
        for name, p in zip(self.trainable.names, self.trainable.params):
            total = torch.zeros(p.shape, dtype=torch.float32)
            for w, m in zip(weights, messages):
                total.add_(from_wire(m.arrays[name], p.dtype).float(), alpha=float(w))
            update.append(total.to(p.dtype))
        return update

    def update_arrays(self, update):
        return {n: to_wire(d) for n, d in zip(self.trainable.names, update)}

    def apply(self, update, round, plan):
        if update is None:
            return
        with torch.no_grad():
            for p, d in zip(self.trainable.params, update):
                p.add_(d.to(p.device))

    # -- K > 1 edge rounds per cloud round (HierFAVG): an edge server's own model -----------------
    def hold(self) -> list[torch.Tensor]:
        """A copy of the host model's trainable weights: an edge server's model between its edge
        rounds (or the global model, to go back to)."""
        return self.trainable.snapshot()

    def load(self, held: list[torch.Tensor]) -> None:
        """Make ``held`` the host model, so that ``catch_up``, ``client_update`` and ``apply`` act
        on it (an edge round is a flat round on the edge's model)."""
        self.trainable.restore(held)

    def model_message(self, held: list[torch.Tensor], uploads: list[Message], round: int, edge: int) -> Message:
        """An edge server's model as its one message up the backhaul (HierFAVG: edges send models),
        weighted by the clients whose ``uploads`` it aggregated, each counted once as ``aggregate``
        weighs it."""
        arrays = {n: to_wire(t) for n, t in zip(self.trainable.names, held)}
        return partial_message(arrays, int(upload_weights(uploads, self.upload_weight).sum()), round, edge)

    def adopt(self, messages: list[Message]) -> None:
        """The global model becomes the weighted mean of the edges' models (HierFAVG's cloud
        step), accumulated in float64: the mean of one model is that model, bit for bit."""
        if not messages:
            return
        weights = upload_weights(messages, self.upload_weight).astype(np.float64)
        with torch.no_grad():
            for name, p in zip(self.trainable.names, self.trainable.params):
                total = None  # one model at a time (not stacked): a tensor's float64 copy, twice at most
                for w, m in zip(weights, messages):
                    term = w * from_wire(m.arrays[name], p.dtype).float().numpy().astype(np.float64)
                    total = term if total is None else total + term
                p.copy_(torch.from_numpy((total / weights.sum()).astype(np.float32)).to(p.dtype))

    def activation_bytes(self):
        """The passes' activations or, once they are done, the upload's delta (trainable-sized, held
        beside the starting copy), whichever is larger."""
        return max(super().activation_bytes(), param_bytes(self.trainable.params))

    def held_bytes(self):
        """Direction buffers plus the round's starting copy of the trainable weights (to form
        the delta)."""
        return super().held_bytes() + param_bytes(self.trainable.params)
