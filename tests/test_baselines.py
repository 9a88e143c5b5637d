"""FedKSeed, FedZO and FedAvg: what each does differently, checked on the tiny model."""
import numpy as np
import pytest
import torch

from edgefed.algorithms.fedavg import FedAvg
from edgefed.algorithms.fedkseed import FedKSeed
from edgefed.algorithms.fedzo import FedZO
from edgefed.algorithms.zo import Directions
from tests.helpers import tiny_setup, zo_cfg


def _rounds(algo, rounds, selected=(0, 1)):
    for r in range(1, rounds + 1):
        plan = algo.configure_round(r, list(selected))
        algo.apply(algo.aggregate([algo.client_update(c, r, plan)[0] for c in selected]), r, plan)


def test_fedkseed_draws_only_pool_seeds_and_catch_up_needs_at_most_k_replays():
    model, data = tiny_setup()
    algo = FedKSeed(model, data, zo_cfg(pool_size=8, pro=False, local_steps=3, perturbations=1), seed=2)
    start = algo.trainable.snapshot()
    plan = algo.configure_round(1, [0])
    up, _ = algo.client_update(0, 1, plan)
    assert len(up.arrays["indices"]) <= 3 and up.arrays["indices"].max() < 8
    _rounds(algo, 5)
    msg, work = algo.catch_up(0, None, 6, algo.configure_round(6, [0]))
    assert 0 < len(msg.arrays["indices"]) <= 8  # 30 local steps, yet at most K directions to replay
    # a new client rebuilds the global model from w0 with one replay per used seed
    final = algo.trainable.snapshot()
    algo.trainable.restore(start)
    dirs = Directions(algo.trainable.params, algo.cfg.distribution)
    for index, total in zip(msg.arrays["indices"], msg.arrays["scalars"]):
        dirs.axpy(algo.pool[int(index)], -algo.cfg.lr * float(total))
    for a, b in zip(algo.trainable.snapshot(), final):
        assert torch.allclose(a, b, atol=1e-6)  # same sum, another order: equal up to rounding


def test_fedkseed_pro_favours_seeds_with_large_scalars():
    model, data = tiny_setup()
    algo = FedKSeed(model, data, zo_cfg(pool_size=4, pro=True, perturbations=1), seed=2)
    algo.abs_sum[:] = [0.1, 4.0, 1.0, 0.0]
    algo.uses[:] = [1, 1, 1, 1]
    probs = algo.probabilities()
    assert probs.sum() == pytest.approx(1.0)
    assert probs[1] > probs[2] > probs[0] > probs[3]
    assert FedKSeed(model, data, zo_cfg(pool_size=4, pro=False, perturbations=1), seed=2).probabilities() is None


@pytest.mark.parametrize("make", [
    lambda m, d: FedZO(m, d, zo_cfg(local_steps=2), seed=1),
    lambda m, d: FedAvg(m, d, zo_cfg(optimizer="adam", local_steps=2, lr=1e-2), seed=1),
])
def test_weight_delta_methods_apply_the_data_weighted_mean_delta(make):
    model, data = tiny_setup()
    algo = make(model, data)
    start = algo.trainable.snapshot()
    plan = algo.configure_round(1, [0, 2])
    messages = [algo.client_update(c, 1, plan)[0] for c in (0, 2)]
    assert all(m.nbytes >= algo.trainable.numel * 4 for m in messages)  # full weight deltas up
    sizes = np.array([len(data.parts[c]) for c in (0, 2)], dtype=np.float64)
    algo.apply(algo.aggregate(messages), 1, plan)
    for i, (name, p) in enumerate(zip(algo.trainable.names, algo.trainable.params)):
        mean = sum(w * torch.as_tensor(m.arrays[name]) for w, m in zip(sizes / sizes.sum(), messages))
        assert torch.allclose(p - start[i], mean.to(p.dtype), atol=1e-6)
    assert any(not torch.equal(p, s) for p, s in zip(algo.trainable.params, start))


def test_fedavg_sgd_step_lowers_the_loss_of_its_batch():
    model, data = tiny_setup()
    algo = FedAvg(model, data, zo_cfg(optimizer="sgd", local_steps=1, lr=1e-3, batch_size=48), seed=1)
    batch = data.train.batch(range(len(data.train)))
    with torch.no_grad():
        before = float(model.loss(batch))
    algo.data.parts[0] = np.arange(len(data.train))  # the client holds the whole batch
    plan = algo.configure_round(1, [0])
    algo.apply(algo.aggregate([algo.client_update(0, 1, plan)[0]]), 1, plan)
    with torch.no_grad():
        assert float(model.loss(batch)) < before


def test_lora_adapters_start_as_a_no_op_and_are_what_zo_trains():
    from edgefed.algorithms.trainable import select_trainable
    from edgefed.algorithms.decomfl import DeComFL

    model, data = tiny_setup()
    batch = data.train.batch(range(8))
    with torch.no_grad():
        before = float(model.loss(batch))
    algo = DeComFL(model, data, zo_cfg(trainable="lora", lr=1e-2), seed=1)
    assert algo.trainable.names and all("lora_" in n for n in algo.trainable.names)
    assert algo.trainable.numel < sum(p.numel() for p in model.parameters()) / 10
    with torch.no_grad():
        assert float(model.loss(batch)) == before  # B = 0: the adapters change nothing yet
    frozen = {n: p.clone() for n, p in model.named_parameters() if "lora_" not in n}
    _rounds(algo, 2)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if "lora_" not in n)
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in zip(algo.trainable.names, algo.trainable.params))
    assert select_trainable(model, "lora+head").numel > algo.trainable.numel  # no second injection
