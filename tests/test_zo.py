"""The ZO estimator against autograd on a tiny model (float64 so rounding does not hide errors)."""
import numpy as np
import pytest
import torch

from edgefed.algorithms.trainable import select_trainable
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, derive_seed, two_point_scalar
from tests.helpers import tiny_setup


def _grad(model, batch, params):
    model.zero_grad(set_to_none=True)
    for p in params:
        p.requires_grad_(True)
    loss = model.loss(batch)
    grads = torch.autograd.grad(loss, params)
    for p in params:
        p.requires_grad_(False)
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_two_point_scalar_equals_directional_derivative(distribution):
    model, data = tiny_setup(dtype=torch.float64)
    trainable = select_trainable(model, "all")
    batch = data.train.batch(range(8))
    grad = _grad(model, batch, trainable.params)
    dirs = Directions(trainable.params, distribution)
    for i in range(5):
        seed = derive_seed(11, i)
        z = torch.cat([t.reshape(-1) for t in dirs.direction(seed)])
        g = two_point_scalar(lambda: model.loss(batch), dirs, seed, 1e-6, Work())
        exact = float(grad @ z)
        # central difference error is O(eps^2 |z|^3); g is rounded to fp32 (rel 6e-8) for the wire
        assert g == pytest.approx(exact, rel=1e-5, abs=1e-6)


def test_average_estimate_points_along_gradient():
    """E[g z] = grad for z ~ N(0, I): with d = 66 head parameters and n = 600 draws the expected
    cosine is about sqrt(n / (n + d)) = 0.98; we require 0.9."""
    model, data = tiny_setup(dtype=torch.float64)
    trainable = select_trainable(model, "head")
    batch = data.train.batch(range(12))
    grad = _grad(model, batch, trainable.params)
    dirs = Directions(trainable.params, "gaussian", cache=True)
    estimate = torch.zeros_like(grad)
    n = 600
    for i in range(n):
        seed = derive_seed(5, i)
        g = two_point_scalar(lambda: model.loss(batch), dirs, seed, 1e-4, Work())
        estimate += float(g) * torch.cat([t.reshape(-1) for t in dirs.direction(seed)])
    cosine = float(torch.nn.functional.cosine_similarity(estimate, grad, dim=0))
    assert cosine > 0.9


def test_restore_returns_parameters_close_to_start():
    model, data = tiny_setup()
    trainable = select_trainable(model, "all")
    before = trainable.snapshot()
    dirs = Directions(trainable.params)
    two_point_scalar(lambda: model.loss(data.train.batch(range(4))), dirs, 123, 1e-3, Work())
    for p, b in zip(trainable.params, before):
        assert torch.allclose(p, b, atol=1e-6)


def test_cached_and_regenerated_directions_are_identical(monkeypatch):
    model, _ = tiny_setup()
    params = select_trainable(model, "all").params
    a = Directions(params, cache=True).direction(77)
    monkeypatch.setattr(Directions, "KEEP_BYTES", 0)  # the host draws z chunk by chunk, as the device
    b = Directions(params, cache=False)
    assert b.numel > b.chunk  # more than one chunk
    assert all(torch.equal(x, y) for x, y in zip(a, b.direction(77)))


def _steps(dirs, seeds, model, batch):
    """MeZO steps along ``seeds`` (a seed may come back, as DeComFL's clients share a round's):
    the parameters after them, the scalars and what was charged."""
    work, scalars = Work(), []
    for seed in seeds:
        g = two_point_scalar(lambda: model.loss(batch), dirs, seed, 1e-3, work)
        dirs.axpy(seed, -1e-2 * float(g), work)
        scalars.append(g)
    return torch.cat([p.detach().reshape(-1).clone() for p in dirs.params]), scalars, work


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_host_keeping_z_changes_no_value_and_no_charge_only_the_draws(monkeypatch, cache, distribution):
    """The host keeps drawn z's (``KEEP_BYTES``) whatever the device does: parameters, scalars and
    charged work equal those of drawing z for every pass, with one draw per distinct seed."""
    seeds = [5, 6, 7, 5, 6, 7, 5]
    draws = []
    sample = Directions._sample

    def counted(self, seed, out):
        draws.append(seed)
        return sample(self, seed, out)

    monkeypatch.setattr(Directions, "_sample", counted)
    results = {}
    for keep in (0, Directions.KEEP_BYTES):
        monkeypatch.setattr(Directions, "KEEP_BYTES", keep)
        model, data = tiny_setup()
        params = select_trainable(model, "all").params
        draws.clear()
        results[keep] = _steps(Directions(params, distribution, cache), seeds, model, data.train.batch(range(4)))
        results[keep] += (len(draws),)
    (flat0, g0, work0, draws0), (flat1, g1, work1, draws1) = results.values()
    assert torch.equal(flat0, flat1) and g0 == g1
    assert work0.ops == work1.ops
    # without room to keep z, a caching host draws once per step, a regenerating one once per pass
    assert draws1 == len(set(seeds)) and draws0 == (len(seeds) if cache else 4 * len(seeds))


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, r, c) for r in range(20) for c in range(20)}) == 400
    assert 0 <= derive_seed(2**40, 3) < 2**32
    assert isinstance(np.uint32(derive_seed(1)), np.uint32)
