"""Zero-order primitives: seeded perturbation directions and the MeZO two-point estimate.

A direction ``z`` is never sent or stored by the method (the host keeps recent ones only to save
drawing them again): any party regenerates it from an integer seed with a ``torch.Generator`` on
the model's device, over one flat buffer of the parameters, so a (seed, scalar) pair replays an
update bit for bit. A CUDA generator draws other numbers than a CPU one: results are
reproducible per kind of device, and every party of a run uses the same kind.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from edgefed.algorithms.work import Work


def derive_seed(root: int, *keys: int) -> int:
    """A 32-bit seed for (root, keys...), e.g. (scenario seed, round, client, step, index)."""
    return int(np.random.SeedSequence(root, spawn_key=tuple(int(k) for k in keys)).generate_state(1)[0])


def flatten_(params: list[torch.Tensor]) -> torch.Tensor:
    """One contiguous 1-D buffer holding ``params`` in order, the tensors turned into views of it
    (so a perturbation or update is one vector op, not one per tensor). Tensors that already are
    consecutive views of one buffer are left as they are; no tensors give an empty buffer."""
    if not params:
        return torch.empty(0)
    first = params[0]
    total = sum(p.numel() for p in params)
    offset, consecutive = first.storage_offset(), True
    for p in params:
        consecutive &= (p.is_contiguous() and p.storage_offset() == offset
                        and p.untyped_storage().data_ptr() == first.untyped_storage().data_ptr())
        offset += p.numel()
    if consecutive:
        return first.detach().as_strided((total,), (1,), first.storage_offset())
    if len({p.dtype for p in params}) > 1:
        raise ValueError("trainable parameters of mixed dtypes")
    flat = torch.empty(total, dtype=first.dtype, device=first.device)
    offset = 0
    for p in params:
        flat[offset: offset + p.numel()].copy_(p.detach().reshape(-1))
        p.data = flat[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat

AXPY_TENSORS = 3  # p += alpha * z reads p and z and writes p

# Row b holds the 8 signs (+1/-1) spelt by the bits of byte b, least significant first.
_SIGNS = ((torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1).float().mul_(2).sub_(1)
_TABLES: dict[tuple, torch.Tensor] = {}  # _SIGNS per (device, dtype)


def rademacher_(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Fill the flat tensor ``out`` with random signs from raw generator bits, one bit per sign.

    One int64 draw gives 64 signs; a table lookup turns each byte into 8 values written straight
    into ``out``, about 7x cheaper than ``normal_`` or one ``randint`` per element.
    """
    n = out.numel()
    words = torch.randint(-2**63, 2**63 - 1, ((n + 63) // 64,), generator=gen, dtype=torch.int64, device=out.device)
    index = words.view(torch.uint8).long()
    key = (out.device, out.dtype)
    if key not in _TABLES:
        _TABLES[key] = _SIGNS.to(out.device, out.dtype)
    table = _TABLES[key]
    bulk = n // 8
    torch.index_select(table, 0, index[:bulk], out=out[: bulk * 8].view(bulk, 8))
    if n > bulk * 8:
        out[bulk * 8:].copy_(table[index[bulk]][: n - bulk * 8])
    return out


def buffer_numel(sizes: list[int], cache: bool) -> int:
    """Elements of a device's z buffer over tensors of ``sizes``: all of z when it caches z, else
    one chunk the size of the largest tensor (what ``Directions`` charges, and plans ahead of it)."""
    return sum(sizes) if cache else max(sizes, default=0)


class Directions:
    """Perturbation directions over a fixed list of parameter tensors, made views of one flat
    buffer (``flatten_``) so that a perturbation is one vector op per chunk of z.

    ``cache`` is the simulated device's choice and moves only what it is charged: ``False`` is
    MeZO's memory-lean way (z regenerated for every pass - perturb, flip, restore, update - one
    chunk of the largest tensor's size at a time), ``True`` draws z once per seed into a buffer the
    size of the parameters. The host itself keeps the last z's it drew whole, up to ``KEEP_BYTES``
    (at least one with ``cache``): a step uses its z four times, and DeComFL's and FedSPZO's
    clients and server share a round's seeds, so the host draws each far fewer times than the
    device is charged for. z is drawn in the same chunks either way, so its values are the same.
    """

    #: host memory for kept z's per set of directions (a 22.7M-parameter MiniLM's z is 91 MB)
    KEEP_BYTES = 2**29

    def __init__(self, params: list[torch.Tensor], distribution: str = "gaussian", cache: bool = False):
        if distribution not in ("gaussian", "rademacher"):
            raise ValueError(f"unknown distribution {distribution!r}")
        self.params = list(params)
        self.distribution = distribution
        self.cache = cache
        self._sizes = [p.numel() for p in self.params]
        self.numel = sum(self._sizes)
        self.elem_bytes = self.params[0].element_size() if self.params else 4
        self.flat = flatten_(self.params)
        self.chunk = max(self._sizes, default=0)
        self._gen = torch.Generator(device=self.flat.device)
        self._device_seed: int | None = None  # the seed whose z a caching device holds
        self._keep = max(self.KEEP_BYTES // max(self.numel * self.elem_bytes, 1), int(cache))
        self._kept: OrderedDict[int, torch.Tensor] = OrderedDict()  # seed -> z, least recent first
        self._buffer: torch.Tensor | None = None  # one chunk of z when none is kept, made on first use

    def release(self) -> None:
        """Drop the host's z buffers (made again on next use), so that a measurement of one
        update (bench/memory_model.py) sees them made, as a device that starts it holding none."""
        self._kept.clear()
        self._buffer = None

    @property
    def buffer_bytes(self) -> int:
        """The simulated device's z buffer: the parameters' size with ``cache``, else one chunk."""
        return buffer_numel(self._sizes, self.cache) * self.elem_bytes

    def _empty(self, numel: int) -> torch.Tensor:
        return torch.empty(numel, dtype=self.flat.dtype, device=self.flat.device)

    def _sample(self, seed: int, out: torch.Tensor):
        """Draw z(seed) chunk by chunk, yielding (start, chunk): into its place in ``out`` when
        ``out`` holds all of z, else each chunk into the start of ``out`` in turn."""
        whole = out.numel() == self.numel
        self._gen.manual_seed(seed)
        for start in range(0, self.numel, self.chunk):
            size = min(self.chunk, self.numel - start)
            z = out[start: start + size] if whole else out[:size]
            if self.distribution == "gaussian":
                z.normal_(generator=self._gen)
            else:
                rademacher_(z, self._gen)
            yield start, z

    def _kept_z(self, seed: int) -> torch.Tensor:
        """z(seed) whole, drawn unless kept; the least recently used z makes room."""
        z = self._kept.pop(seed, None)
        if z is None:
            z = self._kept.popitem(last=False)[1] if len(self._kept) >= self._keep else self._empty(self.numel)
            for _ in self._sample(seed, z):
                pass
        self._kept[seed] = z
        return z

    def _chunks(self, seed: int, work: Work | None):
        """Yield (slice of the parameters, its z) pairs covering all of them for ``seed``,
        charging ``work`` for drawing z as the device does."""
        if not self.numel:
            return
        if work is not None and not (self.cache and self._device_seed == seed):
            work.add_rng(self.numel, self.distribution, self.elem_bytes)
        self._device_seed = seed
        if self._keep:
            yield self.flat, self._kept_z(seed)
            return
        if self._buffer is None:
            self._buffer = self._empty(self.chunk)
        for start, z in self._sample(seed, self._buffer):
            yield self.flat[start: start + z.numel()], z

    def axpy(self, seed: int, alpha: float, work: Work | None = None) -> None:
        """params += alpha * z(seed), in place."""
        with torch.no_grad():
            for target, z in self._chunks(seed, work):
                target.add_(z, alpha=alpha)
        if work is not None:
            work.add_elementwise(self.numel, self.elem_bytes, tensors_touched=AXPY_TENSORS)

    def charge_axpy(self, work: Work, count: int = 1) -> None:
        """What ``count`` axpy's along freshly generated directions cost: the random numbers and one
        parameter pass each (the update cost every method charges, in one place)."""
        work.add_rng(count * self.numel, self.distribution, self.elem_bytes)
        work.add_elementwise(count * self.numel, self.elem_bytes, tensors_touched=AXPY_TENSORS)

    def direction(self, seed: int) -> list[torch.Tensor]:
        """z(seed) as fresh tensors shaped like the parameters (for tests and analysis)."""
        if not self.numel:
            return []
        z = torch.cat([z.clone() for _, z in self._chunks(seed, None)])
        return [t.view_as(p) for t, p in zip(z.split([p.numel() for p in self.params]), self.params)]


def two_sided(fn, dirs: Directions, seed: int, eps: float, work: Work, minus_fn=None) -> tuple:
    """``fn()`` with the parameters moved by +eps z(seed), then ``minus_fn()`` (default ``fn``) at
    -eps z, the parameters restored after: perturb, call, -2 eps z, call, restore. MeZO's estimate
    takes a loss this way, FedSPZO also block 1's outputs."""
    dirs.axpy(seed, eps, work)
    plus = fn()
    dirs.axpy(seed, -2.0 * eps, work)
    minus = (minus_fn or fn)()
    dirs.axpy(seed, eps, work)
    return plus, minus


def two_point_scalar(loss_fn, dirs: Directions, seed: int, eps: float, work: Work, minus_loss_fn=None) -> np.float32:
    """MeZO's estimate of the directional derivative along z(seed): ``g = (L+ - L-) / (2 eps)``,
    with ``L-`` from ``minus_loss_fn`` when the loss at -eps z is another function (FedSPZO's block
    2 runs on block 1's output under -eps u).

    The scalar is rounded to fp32, its wire format, before anyone uses it.
    """
    plus, minus = two_sided(lambda: float(loss_fn()), dirs, seed, eps, work,
                            minus_loss_fn and (lambda: float(minus_loss_fn())))
    return np.float32((plus - minus) / (2.0 * eps))


def replay(dirs: Directions, seeds, scalars, lr: float, work: Work | None = None) -> None:
    """Apply updates ``-lr * g * z(seed)`` in order: how a server or a catching-up client rebuilds
    the model from (seed, scalar) records."""
    for seed, g in zip(np.asarray(seeds).ravel(), np.asarray(scalars, dtype=np.float32).ravel()):
        dirs.axpy(int(seed), -lr * float(g), work)
