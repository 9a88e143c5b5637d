"""Zero-order primitives: seeded perturbation directions and the MeZO two-point estimate.

A direction ``z`` is never sent or stored by the method: any party regenerates it from an integer
seed with a ``torch.Generator``, parameter by parameter in a fixed order, so a (seed, scalar) pair
replays an update bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch

from edgefed.algorithms.work import Work


def derive_seed(root: int, *keys: int) -> int:
    """A 32-bit seed for (root, keys...), e.g. (scenario seed, round, client, step, index)."""
    return int(np.random.SeedSequence(root, spawn_key=tuple(int(k) for k in keys)).generate_state(1)[0])


AXPY_TENSORS = 3  # p += alpha * z reads p and z and writes p

# Row b holds the 8 signs (+1/-1) spelt by the bits of byte b, least significant first.
_SIGNS = ((torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1).float().mul_(2).sub_(1)


def rademacher_(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Fill the flat tensor ``out`` with random signs from raw generator bits, one bit per sign.

    One int64 draw gives 64 signs; a table lookup turns each byte into 8 values written straight
    into ``out``, about 7x cheaper than ``normal_`` or one ``randint`` per element.
    """
    n = out.numel()
    words = torch.randint(-2**63, 2**63 - 1, ((n + 63) // 64,), generator=gen, dtype=torch.int64)
    index = words.view(torch.uint8).long()
    table = _SIGNS.to(out.dtype)
    bulk = n // 8
    torch.index_select(table, 0, index[:bulk], out=out[: bulk * 8].view(bulk, 8))
    if n > bulk * 8:
        out[bulk * 8:].copy_(table[index[bulk]][: n - bulk * 8])
    return out


class Directions:
    """Perturbation directions over a fixed list of parameter tensors.

    ``cache=False`` is MeZO's memory-lean way: z is regenerated for every pass (perturb, flip,
    restore, update). ``cache=True`` draws z once per seed into one flat buffer (one RNG pass per
    step, at the cost of one trainable-size buffer of memory). Both give identical values.
    """

    def __init__(self, params: list[torch.Tensor], distribution: str = "gaussian", cache: bool = False):
        if distribution not in ("gaussian", "rademacher"):
            raise ValueError(f"unknown distribution {distribution!r}")
        self.params = list(params)
        self.distribution = distribution
        self.cache = cache
        self.numel = sum(p.numel() for p in self.params)
        self.elem_bytes = self.params[0].element_size() if self.params else 4
        dtype = self.params[0].dtype if self.params else torch.float32
        size = self.numel if cache else max((p.numel() for p in self.params), default=0)
        self._buffer = torch.empty(size, dtype=dtype)
        self._cached_seed: int | None = None

    @property
    def buffer_bytes(self) -> int:
        return self._buffer.numel() * self._buffer.element_size()

    def _sample(self, out: torch.Tensor, gen: torch.Generator) -> None:
        """Fill the flat tensor ``out`` with z."""
        if self.distribution == "gaussian":
            out.normal_(generator=gen)
        else:
            rademacher_(out, gen)

    def _views(self, seed: int, work: Work | None):
        """Yield (param, z) pairs for ``seed``."""
        if self.cache:
            if self._cached_seed != seed:
                gen = torch.Generator().manual_seed(seed)
                offset = 0
                for p in self.params:
                    self._sample(self._buffer[offset: offset + p.numel()], gen)
                    offset += p.numel()
                self._cached_seed = seed
                if work is not None:
                    work.add_rng(self.numel, self.distribution, self.elem_bytes)
            offset = 0
            for p in self.params:
                yield p, self._buffer[offset: offset + p.numel()].view_as(p)
                offset += p.numel()
        else:
            gen = torch.Generator().manual_seed(seed)
            if work is not None:
                work.add_rng(self.numel, self.distribution, self.elem_bytes)
            for p in self.params:
                z = self._buffer[: p.numel()]
                self._sample(z, gen)
                yield p, z.view_as(p)

    def axpy(self, seed: int, alpha: float, work: Work | None = None) -> None:
        """params += alpha * z(seed), in place."""
        with torch.no_grad():
            for p, z in self._views(seed, work):
                p.add_(z, alpha=alpha)
        if work is not None:
            work.add_elementwise(self.numel, self.elem_bytes, tensors_touched=AXPY_TENSORS)

    def charge_axpy(self, work: Work, count: int = 1) -> None:
        """What ``count`` axpy's along freshly generated directions cost: the random numbers and one
        parameter pass each (the update cost every method charges, in one place)."""
        work.add_rng(count * self.numel, self.distribution, self.elem_bytes)
        work.add_elementwise(count * self.numel, self.elem_bytes, tensors_touched=AXPY_TENSORS)

    def direction(self, seed: int) -> list[torch.Tensor]:
        """z(seed) as fresh tensors (for tests and analysis; the methods never keep z)."""
        return [z.clone() for _, z in self._views(seed, None)]


def two_point_scalar(loss_fn, dirs: Directions, seed: int, eps: float, work: Work) -> np.float32:
    """MeZO's estimate of the directional derivative along z(seed):
    perturb +eps z, loss, -2 eps z, loss, restore; ``g = (L+ - L-) / (2 eps)``.

    The scalar is rounded to fp32, its wire format, before anyone uses it.
    """
    dirs.axpy(seed, eps, work)
    loss_plus = float(loss_fn())
    dirs.axpy(seed, -2.0 * eps, work)
    loss_minus = float(loss_fn())
    dirs.axpy(seed, eps, work)
    return np.float32((loss_plus - loss_minus) / (2.0 * eps))


def replay(dirs: Directions, seeds, scalars, lr: float, work: Work | None = None) -> None:
    """Apply updates ``-lr * g * z(seed)`` in order: how a server or a catching-up client rebuilds
    the model from (seed, scalar) records."""
    for seed, g in zip(np.asarray(seeds).ravel(), np.asarray(scalars, dtype=np.float32).ravel()):
        dirs.axpy(int(seed), -lr * float(g), work)
