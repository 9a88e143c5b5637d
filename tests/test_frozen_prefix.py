"""Frozen layers computed once: the prefix rule, its accounting in every method, the host's
feature cache (equal to the uncached path for any batch composition, bounded by its budget) and
the flat parameter buffer."""
import csv

import numpy as np
import pytest
import torch

from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.features import FeatureCache, FeatureStore, attach_feature_caches
from edgefed.algorithms.fedavg import FedAvg
from edgefed.algorithms.fedkseed import FedKSeed
from edgefed.algorithms.fedspzo import FedSPZO
from edgefed.algorithms.fedzo import FedZO
from edgefed.algorithms.zo import Directions
from tests.conftest import REPO
from tests.helpers import tiny_setup, zo_cfg

SPZO = dict(p1=1, p2=2, split=2, p2_max=32, auto_device=None, auto_step_s=None, auto_budget=2.0)
METHODS = [(DeComFL, {}), (FedKSeed, dict(pool_size=8, pro=False)), (FedZO, {}),
           (FedAvg, dict(optimizer="sgd")), (FedSPZO, SPZO)]


@pytest.mark.parametrize("subset, prefix", [("head", 4), ("last:1", 3), ("last:3", 1), ("all", 0),
                                            ("bias", 0), ("head+norm", 0)])
def test_prefix_is_the_layers_below_the_lowest_trainable_parameter(subset, prefix):
    model, data = tiny_setup()
    assert DeComFL(model, data, zo_cfg(trainable=subset), seed=0).prefix == prefix


@pytest.mark.parametrize("method, extra", METHODS, ids=[m.name for m, _ in METHODS])
def test_every_method_runs_and_counts_the_prefix_once_per_batch(method, extra):
    """last:2 on the 4-layer model: layers 0-1 run once per local step (hooks count them), and the
    work holds one prefix pass per step; layer 2 runs on every perturbation."""
    model, data = tiny_setup()
    steps = 3
    algo = method(model, data, zo_cfg(trainable="last:2", local_steps=steps, **extra), seed=1)
    assert algo.prefix == 2
    algo.client_update(0, 1, algo.configure_round(1, [0]))  # FLOPs are measured once per shape by running
    # the blocks: do it first
    calls = {"layer0": 0, "layer1": 0, "layer2": 0}

    def counter(key):
        def hook(*_):
            calls[key] += 1
        return hook

    handles = [model.layers[i].register_forward_hook(counter(f"layer{i}")) for i in range(3)]
    _, work = algo.client_update(0, 2, algo.configure_round(2, [0]))
    for h in handles:
        h.remove()
    assert calls["layer0"] == calls["layer1"] == steps
    assert work.passes["prefix"] == steps
    # passes per step from the first trainable layer up: FedAvg one forward, FedKSeed one
    # perturbation (two passes), FedSPZO 2*p1*p2 block-2 passes, the others 2 per perturbation
    per_step = {FedAvg: 1, FedKSeed: 2, FedSPZO: 2 * SPZO["p1"] * SPZO["p2"]}.get(method, 2 * algo.cfg.perturbations)
    assert calls["layer2"] == per_step * steps
    assert sum(work.passes.values()) == steps + per_step * steps
    assert work.ops["forward"].flops < (steps + per_step * steps) * model.forward_flops(data.train.batch(range(4)), "full")


def test_fedspzo_block1_starts_from_the_prefix():
    """last:3 with the split at 2: layer 0 (frozen) once per step, layer 1 (block 1) per u."""
    model, data = tiny_setup()
    algo = FedSPZO(model, data, zo_cfg(trainable="last:3", local_steps=2, **{**SPZO, "p1": 2}), seed=1)
    assert algo.prefix == 1 and algo.blocks.dirs1.numel > 0
    algo.client_update(0, 1, algo.configure_round(1, [0]))
    calls = [0, 0]
    handles = [model.layers[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i in range(2)]
    _, work = algo.client_update(0, 2, algo.configure_round(2, [0]))
    for h in handles:
        h.remove()
    assert calls == [2, 2 * 2 * 2]
    assert work.passes == {"prefix": 2, "block1": 2 * 2 * 2, "block2": 2 * 2 * 2 * 2}


@pytest.mark.parametrize("split", [1, 2, 4])
def test_suffix_on_prefix_features_is_the_full_model(split):
    model, data = tiny_setup(dtype=torch.float64)
    batch = data.train.batch(range(8))
    with torch.no_grad():
        features = model.prefix_features(batch, split)
        assert float(model.suffix_loss(features, batch, split)) == float(model.loss(batch))


@pytest.mark.parametrize("split", [2, 4])
def test_cached_features_equal_the_uncached_path_for_any_batch(split):
    """Examples are cached from fixed chunks; a batch mixing lengths (so padded differently from
    those chunks) gets the same logits as the full model, up to float rounding."""
    model, data = tiny_setup()
    cache = FeatureCache(model, data.train, split)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for size in (1, 5, 16):
            rows = rng.choice(len(data.train), size=size, replace=False).tolist()
            batch = data.train.batch(rows, cached=False)
            cached = model.suffix_logits(cache.lookup(batch), batch, split)
            torch.testing.assert_close(cached, model.logits(batch), atol=1e-5, rtol=1e-5)


def test_cache_fills_in_fixed_chunks_whatever_the_order_of_use():
    model, data = tiny_setup()
    first, second = FeatureCache(model, data.train, 2), FeatureCache(model, data.train, 2)
    with torch.no_grad():
        first.lookup(data.train.batch(range(len(data.train)), cached=False))
        for i in reversed(range(len(data.train))):
            second.lookup(data.train.batch([i], cached=False))
    for a, b in zip(first.rows, second.rows):
        assert torch.equal(a, b)


def test_pooled_features_persist_across_runs_and_only_for_the_same_weights_and_inputs(tmp_path, monkeypatch):
    """A second run of the same model reads every chunk from the store, bit for bit; other weights
    or a damaged file are computed again; per-token states are never stored."""
    monkeypatch.setattr("edgefed.algorithms.features.CHUNK", 8)
    model, data = tiny_setup()
    everything = range(len(data.train))

    def fill(model, data, split=4):
        cache = FeatureCache(model, data.train, split, FeatureStore(tmp_path, model))
        with torch.no_grad():
            cache.lookup(data.train.batch(everything, cached=False))
        return cache

    first = fill(model, data)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == len(first.chunks) > 1
    model2, data2 = tiny_setup()  # a new run: the same weights rebuilt from the seed
    with monkeypatch.context() as patch:
        patch.setattr(type(model2), "block1", lambda *a: pytest.fail("the store was not read"))
        second = fill(model2, data2)
    assert all(torch.equal(a, b) for a, b in zip(first.rows, second.rows))
    files[0].write_bytes(b"not a safetensors file")
    other, data3 = tiny_setup(seed=1)  # other weights: other keys, nothing read
    fill(other, data3)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * len(files)
    damaged = fill(*tiny_setup())
    assert all(torch.equal(a, b) for a, b in zip(first.rows, damaged.rows))
    assert files[0].read_bytes() != b"not a safetensors file"  # recomputed and rewritten
    fill(*tiny_setup(), split=2)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * len(files)  # per-token: not stored


def test_a_store_that_cannot_be_written_says_so_once_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("edgefed.algorithms.features.CHUNK", 8)
    model, data = tiny_setup()
    blocked = tmp_path / "file"
    blocked.write_text("a file where the store's folder would be")
    cache = FeatureCache(model, data.train, 4, FeatureStore(blocked / "store", model))
    with torch.no_grad():
        cache.lookup(data.train.batch(range(len(data.train)), cached=False))
    assert len(cache.chunks) > 1 and all(row is not None for row in cache.rows)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "EDGEFED_FEATURE_STORE" in lines[0]


def test_cache_budget_falls_back_to_recomputation_and_says_so_once(capsys):
    model, data = tiny_setup()
    train, test = data.train, data.test
    need = FeatureCache.size_bytes(model, train, 2)
    assert attach_feature_caches(model, 2, {"held-out": test}, need) == need and test.features is not None
    test.features = None
    assert attach_feature_caches(model, 2, {"training": train}, need - 1) == 0
    assert train.features is None
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "host.feature_cache_bytes" in lines[0] and "training" in lines[0]
    assert attach_feature_caches(model, 2, {"training": train}, 0) == 0  # 0: off, silently
    assert not capsys.readouterr().err


def test_trainable_parameters_are_views_of_one_flat_buffer():
    model, data = tiny_setup()
    algo = DeComFL(model, data, zo_cfg(trainable="last:2"), seed=0)
    flat = algo.trainable.flat
    assert flat.numel() == algo.trainable.numel
    assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in algo.trainable.params)
    assert algo.dirs.flat.data_ptr() == flat.data_ptr()  # the directions perturb that same buffer
    before = [p.detach().clone() for p in algo.trainable.params]
    algo.dirs.axpy(5, 0.5)
    z = algo.dirs.direction(5)
    for p, b, zi in zip(algo.trainable.params, before, z):
        torch.testing.assert_close(p.detach(), b + 0.5 * zi)


def test_directions_flatten_loose_tensors_and_keep_them_in_sync():
    params = [torch.zeros(3, 2), torch.zeros(5)]
    dirs = Directions(params, cache=False)
    dirs.axpy(1, 1.0)
    assert torch.equal(torch.cat([p.reshape(-1) for p in params]), dirs.flat)
    assert torch.equal(dirs.flat, torch.cat([z.reshape(-1) for z in dirs.direction(1)]))


@pytest.mark.slow
def test_quickstart_learns_the_same_with_the_feature_cache_on_and_off(tmp_path):
    """MiniLM, head only, 1 round of 400 training and 100 held-out sentences (fewer to encode for the
    cache than the quickstart's 2,000; the round is the same): every evaluation's accuracy within one
    held-out example and loss within rel 1e-4, cache on (the default) against off.

    Why these bounds: the arms differ only in the order of float32 sums inside the frozen encoder
    (it runs on 64-sentence chunks when the cache fills, on 16-sentence batches when it does not),
    which moves each pooled feature by a few units of float32 rounding (u = 2**-24, relative). A ZO
    scalar (L+ - L-) / (2 eps) sees that as at most ~u L / eps ~ 4e-5 per step (L ~ 0.7, eps 1e-3);
    times lr 2e-3 over 1 round x 5 steps the head's weights move ~1e-6 apart, so the held-out loss
    moves by ~1e-6 relative: 1e-4 leaves two orders of magnitude for any CPU's rounding. An example
    whose two logits tie within that can flip, hence one example of accuracy."""
    from edgefed.runner import run_scenario
    from edgefed.scenario import load_scenario

    evaluations = {}
    for budget in ("2147483648", "0"):
        scenario, base = load_scenario(REPO / "scenarios/quickstart.yaml",
                                       ["rounds.max=1", "rounds.eval_every=1", "task.dataset.test_limit=100",
                                        "task.dataset.train_limit=400",
                                        "output.plots=false", f"host.feature_cache_bytes={budget}"])
        run_scenario(scenario, base, tmp_path / budget)
        with (tmp_path / budget / "rounds.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        evaluations[budget] = [(float(r["accuracy"]), float(r["loss"])) for r in rows if r["accuracy"]]
    cached, uncached = evaluations.values()
    print("round-by-round (accuracy, loss) cached vs uncached:", list(zip(cached, uncached)))
    assert len(cached) == len(uncached) == 2  # rounds 0 and 1
    assert cached[-1][1] != cached[0][1]  # the head learned, so equal curves say something
    for (acc_on, loss_on), (acc_off, loss_off) in zip(cached, uncached):
        assert abs(acc_on - acc_off) <= 1 / 100 + 1e-12
        assert loss_on == pytest.approx(loss_off, rel=1e-4)


def test_a_run_reading_the_feature_store_writes_the_same_files(tmp_path, tiny_dict, monkeypatch):
    """Head only: the second run reads every encoder output from the store and its run directory
    equals the first's except host seconds."""
    from typer.testing import CliRunner

    from edgefed.cli import app
    from tests.conftest import write_scenario

    tiny_dict["algorithm"]["trainable"] = "head"
    monkeypatch.setenv("EDGEFED_FEATURE_STORE", str(tmp_path / "store"))
    path = write_scenario(tmp_path, tiny_dict)
    outputs = []
    for name in ("first", "second"):
        result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / name), "--quiet"])
        assert result.exit_code == 0, result.output
        with (tmp_path / name / "rounds.csv").open() as fh:
            outputs.append([{k: v for k, v in r.items() if k != "host_seconds"} for r in csv.DictReader(fh)])
        outputs.append((tmp_path / name / "clients.csv").read_text())
    assert list((tmp_path / "store").glob("*.safetensors"))
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
