"""Seed replay: the global model rebuilt from (seed, scalar) records equals, bit for bit, what the
server holds; a client that missed rounds catches up exactly."""
import numpy as np
import torch

from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.zo import Directions, replay
from tests.helpers import tiny_setup, zo_cfg


def _run_rounds(algo, rounds, per_round=2):
    rng = np.random.default_rng(0)
    for r in range(1, rounds + 1):
        selected = sorted(rng.choice(algo.data.num_clients, per_round, replace=False).tolist())
        plan = algo.configure_round(r, selected)
        messages = [algo.client_update(c, r, plan)[0] for c in selected]
        algo.apply(algo.aggregate(messages), r, plan)


def test_client_update_leaves_global_model_unchanged():
    model, data = tiny_setup()
    algo = DeComFL(model, data, zo_cfg(), seed=1)
    before = algo.trainable.snapshot()
    algo.client_update(0, 1, algo.configure_round(1, [0]))
    assert all(torch.equal(a, b) for a, b in zip(before, algo.trainable.snapshot()))


def test_replayed_history_equals_global_model_bit_for_bit():
    model, data = tiny_setup()
    algo = DeComFL(model, data, zo_cfg(), seed=1)
    start = algo.trainable.snapshot()
    _run_rounds(algo, 4)
    final = algo.trainable.snapshot()
    assert any(not torch.equal(a, b) for a, b in zip(start, final)), "the model must have moved"

    # a client that missed every round: reset to w0 and replay the downloaded history
    msg, work = algo.catch_up(client=0, last_round=None, round=5, plan=algo.configure_round(5, [0]))
    algo.trainable.restore(start)
    dirs = Directions(algo.trainable.params, algo.cfg.distribution)
    steps, perts = algo.cfg.local_steps, algo.cfg.perturbations
    seeds = np.concatenate([rec["seeds"] for rec in algo.history.records])
    assert np.array_equal(msg.arrays["history_seeds"], seeds) and len(seeds) == 4 * steps
    scalars = msg.arrays["history_scalars"].reshape(-1, perts)
    for step_seed, g in zip(seeds, scalars):  # record by record, step by step
        replay(dirs, algo.perturbation_seeds(int(step_seed)), g, algo.cfg.lr / perts)
    assert all(torch.equal(a, b) for a, b in zip(final, algo.trainable.snapshot()))
    assert work.ops["rng"].flops > 0


def test_catch_up_bytes_follow_history_length():
    model, data = tiny_setup()
    algo = DeComFL(model, data, zo_cfg(), seed=1)
    _run_rounds(algo, 3)
    plan = algo.configure_round(4, [0])
    full, _ = algo.catch_up(0, None, 4, plan)
    recent, _ = algo.catch_up(0, 2, 4, plan)
    steps, perts = algo.cfg.local_steps, algo.cfg.perturbations
    per_record = steps * 4 + steps * perts * 4  # one uint32 seed per step + fp32 scalars
    head = sum(a.nbytes for a in algo.history.head.values())
    header_and_descriptors = full.nbytes - head - 3 * per_record - steps * 4
    assert header_and_descriptors > 0
    assert recent.nbytes < full.nbytes
    assert len(full.encode()) == full.nbytes and len(recent.encode()) == recent.nbytes
