"""FedSPZO: block-2 on cached outputs, pass accounting by hooks, per-block estimates vs autograd,
and catch-up bit for bit."""
import pytest
import torch

from edgefed.algorithms.fedspzo import FedSPZO, split_scalars
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, derive_seed
from tests.helpers import tiny_setup, zo_cfg


def spzo_cfg(**kw):
    base = dict(perturbations=1, p1=2, p2=3, split=2, p2_max=32, auto_device=None, auto_step_s=None,
                auto_budget=2.0)
    base.update(kw)
    return zo_cfg(**base)


@pytest.mark.parametrize("split", [0, 1, 3, 4])
def test_block2_on_cached_block1_outputs_is_the_full_loss(split):
    model, data = tiny_setup(dtype=torch.float64)
    batch = data.train.batch(range(8))
    with torch.no_grad():
        assert float(model.block2_loss(model.block1(batch, split), batch, split)) == float(model.loss(batch))


def test_passes_per_step_counted_by_hooks():
    model, data = tiny_setup()
    p1, p2, steps, split = 2, 3, 2, 2
    algo = FedSPZO(model, data, spzo_cfg(p1=p1, p2=p2, split=split, local_steps=steps), seed=1)
    counts = {"embed": 0, "block1_last": 0, "block2_first": 0, "block2_last": 0}

    def counter(key):
        def hook(*_):
            counts[key] += 1
        return hook

    algo.client_update(0, 1, algo.configure_round(1, [0]))  # FLOPs are measured (by running the blocks) once per shape: do it first
    handles = [model.backbone.embeddings.register_forward_hook(counter("embed")),
               model.layers[split - 1].register_forward_hook(counter("block1_last")),
               model.layers[split].register_forward_hook(counter("block2_first")),
               model.layers[-1].register_forward_hook(counter("block2_last"))]
    _, work = algo.client_update(0, 2, algo.configure_round(2, [0]))
    for h in handles:
        h.remove()
    assert counts["embed"] == counts["block1_last"] == 2 * p1 * steps
    assert counts["block2_first"] == counts["block2_last"] == 2 * p1 * p2 * steps
    assert work.passes == {"block1": 2 * p1 * steps, "block2": 2 * p1 * p2 * steps}


def test_frozen_block1_runs_once_per_step():
    model, data = tiny_setup()
    algo = FedSPZO(model, data, spzo_cfg(trainable="last:2", split=2, p1=2, p2=2, local_steps=1), seed=1)
    _, work = algo.client_update(0, 1, algo.configure_round(1, [0]))
    assert algo.blocks.dirs1.numel == 0 and work.passes == {"prefix": 1, "block2": 8}


def _grad(model, batch, params):
    for p in params:
        p.requires_grad_(True)
    grads = torch.autograd.grad(model.loss(batch), params)
    for p in params:
        p.requires_grad_(False)
    return torch.cat([g.reshape(-1) for g in grads])


def test_per_block_estimates_align_with_autograd():
    """Block 1 = the output LayerNorm of layer 1, block 2 = that of layer 3 (64 params each), split
    at 2, float64, eps 1e-5, n = 200 block-1 directions x p2 = 2. The block-2 estimate (400
    directions; expected cosine about sqrt(400/464) = 0.93) must reach 0.8 with autograd; the
    block-1 estimate (200 directions, its g also carrying block-2 noise) 0.6."""
    model, data = tiny_setup(dtype=torch.float64)
    batch = data.train.batch(range(12))
    block1 = list(model.layers[1].output.LayerNorm.parameters())
    block2 = list(model.layers[3].output.LayerNorm.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    grad1, grad2 = _grad(model, batch, block1), _grad(model, batch, block2)
    dirs1, dirs2 = Directions(block1, cache=True), Directions(block2, cache=True)
    n, p2 = 200, 2
    est1, est2 = torch.zeros_like(grad1), torch.zeros_like(grad2)
    flat = lambda dirs, seed: torch.cat([t.reshape(-1) for t in dirs.direction(seed)])  # noqa: E731
    with torch.no_grad():
        for i in range(n):
            us, vs = [derive_seed(9, 1, i)], [[derive_seed(9, 2, i, j) for j in range(p2)]]
            g = split_scalars(model, batch, 2, dirs1, dirs2, us, vs, 1e-5, Work())
            est1 += float(g[0].mean()) * flat(dirs1, us[0])
            for j in range(p2):
                est2 += float(g[0, j]) * flat(dirs2, vs[0][j])
    cos1 = float(torch.nn.functional.cosine_similarity(est1, grad1, dim=0))
    cos2 = float(torch.nn.functional.cosine_similarity(est2, grad2, dim=0))
    print(f"cosine block 1 {cos1:.3f}, block 2 {cos2:.3f}")
    assert cos2 > 0.8, cos2
    assert cos1 > 0.6, cos1


def test_catch_up_rebuilds_the_global_model_bit_for_bit():
    model, data = tiny_setup()
    algo = FedSPZO(model, data, spzo_cfg(trainable="bias+head"), seed=1)
    snapshots = {0: algo.trainable.snapshot()}
    for r in range(1, 5):
        selected = [r % 4, (r + 1) % 4]
        plan = algo.configure_round(r, selected)
        algo.apply(algo.aggregate([algo.client_update(c, r, plan)[0] for c in selected]), r, plan)
        snapshots[r] = algo.trainable.snapshot()
    assert any(not torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[4]))
    plan = algo.configure_round(5, [0])
    last = 1  # the client holds the model as of round 1 and missed rounds 2..4
    msg, work = algo.catch_up(0, last, 5, plan)
    algo.trainable.restore(snapshots[last])
    steps, p1, p2 = algo.cfg.local_steps, algo.cfg.p1, algo.blocks.p2
    seeds = msg.arrays["history_seeds"]
    scalars = msg.arrays["history_scalars"].reshape(-1, p1, p2)
    assert len(seeds) == 3 * steps and len(scalars) == 3 * steps
    for seed, block in zip(seeds, scalars):
        algo.replay_step([seed], block)
    assert all(torch.equal(a, b) for a, b in zip(snapshots[4], algo.trainable.snapshot()))
    assert msg.nbytes == len(msg.encode())
    payload = 4 * steps + 4 * 3 * steps + 4 * 3 * steps * p1 * p2  # round seeds, history seeds, scalars
    assert msg.nbytes - payload < 64  # the rest is header and array descriptors
    assert work.ops["elementwise"].bytes > 0


def test_auto_plan_moves_the_split_past_frozen_layers():
    """With only the last two layers + head trainable, no plan perturbs a frozen block 1 twice:
    the split lands at or after layer 2, and p2 grows when the budget does."""
    model, data = tiny_setup()
    small = FedSPZO(model, data, spzo_cfg(trainable="last:2", split="auto", p2="auto", p1=1, auto_budget=2.0), 1)
    large = FedSPZO(model, data, spzo_cfg(trainable="last:2", split="auto", p2="auto", p1=1, auto_budget=8.0), 1)
    assert small.blocks.split >= 2 and large.blocks.split >= 2
    assert large.blocks.p2 > small.blocks.p2 >= 1
    with pytest.raises(ValueError, match="algorithm.split"):
        FedSPZO(model, data, spzo_cfg(split=9), 1)


def test_the_blocks_are_planned_once_for_the_fitted_device():
    """``fit_device`` names the device and the blocks are planned for it, once: a second
    ``fit_device`` would move the plan under clients that already ran, and is refused."""
    model, data = tiny_setup()
    algo = FedSPZO(model, data, spzo_cfg(split="auto", p2="auto", p1=1, auto_step_s=1e-3), 1)
    algo.fit_device(5e9, 8e9)
    blocks, plan = algo.blocks, algo.plan_for(5e9, 8e9)
    assert (blocks.split, blocks.p2) == (plan.split, plan.p2)
    algo.client_update(0, 1, algo.configure_round(1, [0]))
    assert algo.blocks is blocks
    with pytest.raises(RuntimeError, match="fit_device"):
        algo.fit_device(1e12, 8e9)

def test_parallel_workers_plan_for_the_fleet_as_the_host_does(tiny_dict):
    """A worker process builds its own learning: FedSPZO's auto split and p2 must fit the same
    device as the host's, or its clients would run another plan than a sequential run's."""
    import edgefed.parallel as parallel
    from edgefed.build import build_run
    from edgefed.scenario import scenario_dict, validate_scenario
    from tests.conftest import REPO

    tiny_dict["algorithm"] = {"name": "fedspzo", "lr": 1e-3, "local_steps": 1, "batch_size": 8, "p1": 1,
                              "split": "auto", "p2": "auto", "auto_step_s": 0.002, "trainable": "all"}
    scenario = validate_scenario(tiny_dict, REPO)
    host = build_run(scenario, REPO).engine.algo
    by_budget = validate_scenario({**tiny_dict, "algorithm": {**tiny_dict["algorithm"], "auto_step_s": None}}, REPO)
    unfitted = build_run(by_budget, REPO).engine.algo  # what a worker that fits no device plans
    # the device's step time moves the plan
    assert (host.blocks.split, host.blocks.p2) != (unfitted.blocks.split, unfitted.blocks.p2)
    try:
        parallel._start_worker(scenario_dict(scenario), str(REPO), 1)
        assert (parallel._ALGO.blocks.split, parallel._ALGO.blocks.p2) == (host.blocks.split, host.blocks.p2)
    finally:
        parallel._ALGO = None


def test_lora_last_selects_fedspzos_block_2():
    """The study's control (DeComFL on FedSPZO's block 2 only): ``lora-last:N+head`` selects
    exactly the parameters FedSPZO perturbs in block 2 at split ``layers - N`` under ``lora+head``
    - on tiny-bert through FedSPZO itself, and on MiniLM-L6 at the study's split 4."""
    from edgefed.algorithms.models import TaskModel, load_backbone
    from edgefed.algorithms.trainable import select_trainable

    model, data = tiny_setup()
    algo = FedSPZO(model, data, spzo_cfg(trainable="lora+head", split=2), 1)
    block2 = {n for n, p in model.named_parameters() if any(p is q for q in algo.blocks.dirs2.params)}
    fresh, _ = tiny_setup()
    assert set(select_trainable(fresh, "lora-last:2+head").names) == block2
    assert block2 and all("lora_" in n or n.startswith("head.") for n in block2)

    def minilm():
        backbone, tokenizer, kind = load_backbone("minilm-l6", "encoder", "fp32", 0)
        return TaskModel(backbone, tokenizer, kind, 2)

    study = minilm()
    trainable = set(select_trainable(study, "lora+head").names)
    expected = study.block_param_names(4)[1] & trainable
    assert set(select_trainable(minilm(), "lora-last:2+head").names) == expected
    assert any(".layer.5." in n for n in expected) and not any(".layer.3." in n for n in expected)
