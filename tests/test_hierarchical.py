"""Hierarchical (edge-server) aggregation: the learning equals flat aggregation up to float rounding
for every method; the backhaul carries one upload per cell and each distinct download once; time
matches a hand computation; the deadline is the server's, end to end, and over-selection keeps the
first arrivals across cells; K edge rounds in one cell learn as K flat rounds, bit for bit; bad
input is one line."""
import copy
from dataclasses import replace
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgefed.algorithms.aggregation import WEIGHT
from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.fedkseed import FedKSeed
from edgefed.algorithms.fedzo import FedZO
from edgefed.algorithms.message import ARRAY_HEAD, HEADER, Message
from edgefed.algorithms.registry import METHODS as REGISTRY, example
from edgefed.algorithms.work import Work
from edgefed.build import build_run
from edgefed.simulator.engine import Client, Engine
from edgefed.simulator.network import CellSpec
from edgefed.scenario import validate_scenario
from edgefed.simulator.inputs import EngineConfig
from tests.conftest import REPO, write_scenario
from tests.helpers import tiny_setup, zo_cfg
from tests.test_cli_errors import _assert_one_line_error
from tests.helpers import edgefed
from tests.test_end_to_end import read_csv
from tests.test_systems import LINK, NO_EVALUATION, FakeAlgo, device, play

CELLS = {"north": {"up_mbps": 20.0, "down_mbps": 50.0, "latency_s": 0.01},
         "south": {"up_mbps": 10.0, "down_mbps": 30.0, "latency_s": 0.02},
         "west": {"up_mbps": 40.0, "down_mbps": 40.0}}

METHODS = {name: example(name) for name in REGISTRY}  # every method, in the configuration it declares


def in_cells(tiny: dict, method: str, kind: str) -> dict:
    """The tiny scenario with its three groups in three cells and every client in every round."""
    raw = copy.deepcopy(tiny)
    raw["algorithm"] = METHODS[method]
    raw["fleet"]["network"] = {"cells": CELLS}
    for group, cell in zip(raw["fleet"]["groups"], CELLS):
        group["cell"] = cell
    raw["rounds"].update(max=2, clients_per_round=8, eval_every=2, aggregation={"kind": kind})
    return raw


def trained(raw: dict) -> SimpleNamespace:
    """Run a scenario in memory, keeping the rounds' records and, per round, the server's
    aggregation (its messages and result) and the client uploads each cell's partial was made of."""
    engine = build_run(validate_scenario(raw, REPO), REPO).engine
    algo = engine.algo
    run = SimpleNamespace(rounds=[], served={}, cells={}, aggregate=algo.aggregate)
    partial, in_cell = algo.partial, []

    def record_partial(messages, round, edge):
        run.cells.setdefault(round, []).append(list(messages))
        in_cell.append(edge)
        try:
            return partial(messages, round, edge)
        finally:
            in_cell.pop()

    def record_aggregate(messages):
        update = run.aggregate(messages)
        if messages and not in_cell:
            run.served[messages[0].round] = (messages, update)
        return update

    algo.aggregate, algo.partial = record_aggregate, record_partial

    class Keep:
        def round_configured(self, engine, round):
            pass

        def round_done(self, engine, round):
            run.rounds.append((round.record, round.rows))

    engine.observers = [Keep()]
    engine.run()
    return run


def as_arrays(update) -> list[np.ndarray]:
    """An aggregate as float64 arrays, whatever the method returns (tensors or an array)."""
    parts = update if isinstance(update, list) else [update]
    return [np.asarray(torch.as_tensor(x).double()) for x in parts]


def magnitudes(messages: list[Message]) -> list[Message]:
    """The messages with every float array replaced by its absolute value: a method's (linear,
    positively weighted) aggregate of these is ``sum_i w_i |x_i|``, the scale of its rounding error."""
    return [Message(m.kind, m.round, m.client, {k: np.abs(v) if v.dtype.kind == "f" else v
                                                for k, v in m.arrays.items()}) for m in messages]


@pytest.mark.parametrize("method", list(METHODS))
def test_learning_equals_flat_aggregation_up_to_float_rounding(tiny_dict, method):
    """Each round, the server's aggregate of the cells' partials equals the flat aggregate of the
    same client uploads up to a bound derived from the float operations, not fitted to a CPU.

    A weighted mean of n uploads accumulated in float32 (FedAvg, FedZO: a multiply and an add per
    term) is off the exact mean by at most 2n u S per coordinate, u = 2**-24 and S = sum_i w_i |x_i|;
    the two tiers sum n_c uploads in a cell, then C cells, so the two results differ by at most
    2(n + C + max n_c) u S. Means accumulated in float64 and cast to float32 (DeComFL, FedSPZO,
    FedKSeed) round three times (cell, server, flat): within 3 u S, well inside the same bound.
    Weights after a second round are not compared: a rounding-level difference in the start of a
    round can grow through training (Adam divides by the root of a tiny second moment).
    Round 1 starts both runs from identical weights, so their uploads must be bit-identical."""
    flat = trained(in_cells(tiny_dict, method, "flat"))
    hier = trained(in_cells(tiny_dict, method, "hierarchical"))
    assert [r.aggregated for r, _ in hier.rounds] == [r.aggregated for r, _ in flat.rounds] == [0, 8, 8]
    assert sorted(hier.served) == sorted(hier.cells) == [1, 2]
    u = 2.0 ** -24
    for round, (partials, update) in sorted(hier.served.items()):
        cells = hier.cells[round]
        uploads = [m for cell in cells for m in cell]
        n, c, largest = len(uploads), len(cells), max(len(cell) for cell in cells)
        assert n == 8 and c == len(partials) and all(m.kind == "partial" for m in partials)
        bound = 2 * (n + c + largest) * u
        expected = as_arrays(hier.aggregate(uploads))
        scale = as_arrays(hier.aggregate(magnitudes(uploads)))
        for got, want, s in zip(as_arrays(update), expected, scale, strict=True):
            excess = np.abs(got - want) - bound * s
            assert np.all(excess <= 0), f"round {round}: off by {float(excess.max()):.3g} beyond the bound"
        assert any(np.any(want != 0) for want in expected)  # the uploads carry something
    # round 1: same weights, seeds and batches, so the very same uploads in both runs
    flat_uploads = {m.client: m.arrays for m in flat.served[1][0]}
    hier_uploads = {m.client: m.arrays for cell in hier.cells[1] for m in cell}
    assert flat_uploads.keys() == hier_uploads.keys()
    for client, arrays in flat_uploads.items():
        assert arrays.keys() == hier_uploads[client].keys()
        assert all(np.array_equal(arrays[k], hier_uploads[client][k]) for k in arrays)
    assert all(r.backhaul_bytes_up > 0 for r, _ in hier.rounds[1:]) and flat.rounds[1][0].backhaul_bytes_up is None


def test_the_server_weights_each_cell_by_what_it_stands_for():
    """A cell of one client and a cell of three: the server's mean of the two cell means, weighted by
    their counts, is the flat mean; the unweighted mean of means is not."""
    model, data = tiny_setup(num_clients=4)
    algo = DeComFL(model, data, zo_cfg(), 0)
    rng = np.random.default_rng(0)
    ups = [Message("seed-scalars", 1, c, {"scalars": rng.standard_normal((2, 2)).astype(np.float32)})
           for c in range(4)]
    one, three = algo.partial(ups[:1], 1, 0), algo.partial(ups[1:], 1, 1)
    assert one.arrays[WEIGHT].tolist() == [1] and three.arrays[WEIGHT].tolist() == [3]
    flat = algo.aggregate(ups)
    np.testing.assert_allclose(algo.aggregate([one, three]), flat, rtol=1e-6)
    naive = (one.arrays["scalars"] + three.arrays["scalars"]) / 2
    assert not np.allclose(naive, flat, rtol=1e-3)


def test_fedkseed_cells_weight_by_examples_and_forward_only_the_seeds_used():
    model, data = tiny_setup(num_clients=4)
    algo = FedKSeed(model, data, zo_cfg(perturbations=1, pool_size=32, pro=False, local_steps=3), 0)
    ups = [algo.client_update(c, 1, None)[0] for c in range(4)]
    cells = [algo.partial(ups[:3], 1, 0), algo.partial(ups[3:], 1, 1)]
    assert cells[0].arrays[WEIGHT].tolist() == [sum(len(data.parts[c]) for c in range(3))]
    used = set(np.concatenate([u.arrays["indices"] for u in ups[:3]]).tolist())
    assert set(cells[0].arrays["indices"].tolist()) <= used  # sparse, as a client's upload
    np.testing.assert_allclose(algo.aggregate(cells), algo.aggregate(ups), rtol=1e-6, atol=1e-7)


# -- systems: the fake method below has hand-sized messages -------------------------------------

def sized(kind: str, round: int, client: int, nbytes: int) -> Message:
    """A message of exactly ``nbytes`` on the wire (one uint8 array)."""
    return Message(kind, round, client, {"w": np.zeros(nbytes - HEADER.size - ARRAY_HEAD.size - 4, np.uint8)})


class EdgeFake:
    """Fixed-size downloads (identical for every client), uploads and work; a cell's partial is a
    fixed-size message listing the clients it aggregated."""

    def __init__(self, down=1_000_000, up=1_000_000, partial=500_000, flops=2e9):
        self.down, self.up, self.part, self.flops = down, up, partial, flops
        self.aggregated: list = []
        self.cells: dict[int, list[int]] = {}  # edge -> the clients its partial aggregated

    def configure_round(self, round, selected):
        return None

    def catch_up(self, client, last_round, round, plan):
        return sized("weights", round, client, self.down), Work()

    def client_update(self, client, round, plan):
        work = Work()
        work.add("forward", flops=self.flops)
        return sized("weights", round, client, self.up), work

    def partial(self, messages, round, edge):
        if not messages:
            return None
        self.cells[edge] = [m.client for m in messages]
        return sized("partial", round, edge, self.part)

    def aggregate(self, messages):
        return sorted(c for m in messages for c in self.cells[m.client])

    def apply(self, update, round, plan):
        self.aggregated.append(update)

    def rejects(self, message):
        return None


def edge_engine(algo, devices, cells, rounds=None, link=LINK, attribution="session"):
    clients = [Client(i, d.name, d, link, cell=c) for i, (d, c) in enumerate(zip(devices, cells))]
    rounds = rounds or EngineConfig(max_rounds=1, clients_per_round=len(devices), hierarchical=True)
    cells = {c: CellSpec(up_mbps=4.0, down_mbps=8.0, latency_s=0.05) for c in set(cells)}
    engine = Engine(algo, clients, replace(rounds, cells=cells, charge_wait=attribution == "round"))
    engine.schedule = NO_EVALUATION  # the fakes have no model to evaluate
    return engine


@pytest.mark.parametrize("attribution", ["session", "round"])
def test_one_cell_matches_a_hand_computation(attribution):
    algo = EdgeFake()
    (record, rows), = play(edge_engine(algo, [device(1.0)] * 2, ["ap", "ap"], attribution=attribution))
    # backhaul down, once for both (identical downloads): 0.05 s + 8 Mbit / 8 Mbps = 1.05 s; then each
    # access link: promotion 0.5 + latency 0.1 + 8 Mbit / 16 Mbps = 1.1 s -> downloaded at 2.15 s
    # compute 2 GFLOP / 1 GFLOP/s = 2 s; upload (inside the 5 s tail: no promotion) 0.1 + 8/8 = 1.1 s -> 5.25 s
    # the edge forwards 4 Mbit over the 4 Mbps backhaul: 0.05 + 1 = 1.05 s -> the round ends at 6.3 s
    assert [r.download_s for r in rows] == pytest.approx([2.15, 2.15])
    assert [r.upload_s for r in rows] == pytest.approx([1.1, 1.1])
    assert [r.idle_s for r in rows] == pytest.approx([1.05, 1.05])
    assert record.sim_time_s == pytest.approx(6.3)
    assert (record.backhaul_bytes_down, record.backhaul_bytes_up) == (1_000_000, 500_000)
    assert (record.bytes_down, record.bytes_up) == (2_000_000, 2_000_000)  # the devices' own
    # the device waited idle for the edge (radio idle_w is 0 here): baseline 0.5 W over download + upload,
    # and over its 1.05 s wait for the round's end where it is charged to the round
    wait_s = 1.05 if attribution == "round" else 0.0
    assert rows[0].energy_idle_j == pytest.approx(0.5 * (2.15 + 1.1 + wait_s))
    down_j = 0.5 * 2.0 + (0.1 + 0.5) * 1.0 + 0.1 * 8
    up_j = (0.1 + 1.0) * 1.0 + 0.5 * 8
    assert rows[0].energy_radio_j == pytest.approx(down_j + 2.0 * 1.0 + up_j + 5.0 * 1.0)
    assert algo.aggregated == [[0, 1]]


def test_the_backhaul_carries_one_upload_per_cell_and_each_distinct_download_once():
    algo = EdgeFake(down=10_000, up=20_000, partial=30_000, flops=1e6)
    cells = ["a", "a", "a", "b", "b", "c"]
    (record, rows), = play(edge_engine(algo, [device()] * 6, cells))
    assert record.backhaul_bytes_up == 3 * 30_000  # one per cell, not one per client
    assert record.backhaul_bytes_down == 3 * 10_000
    assert record.bytes_up == 6 * 20_000 and record.aggregated == 6

    class Stale(EdgeFake):  # client 0 catches up on more history than the others
        def catch_up(self, client, last_round, round, plan):
            return sized("history", round, client, 15_000 if client == 0 else self.down), Work()

    (record, _), = play(edge_engine(Stale(down=10_000, flops=1e6), [device()] * 6, cells))
    assert record.backhaul_bytes_down == 15_000 + 3 * 10_000  # cell a receives two distinct downloads


BACKHAUL_UP_S = 0.05 + 8 * 1000 / 4e6  # a 1000-byte partial up edge_engine's backhaul: latency + 8 kbit / 4 Mbps


def test_overselection_keeps_the_first_arrivals_across_cells():
    """Four devices, two cells; the server wants 2 of 4: the two fastest arrivals count, both in the
    fast cell, and the slow cell's edge is closed by the same quota, with nothing to send."""
    algo = EdgeFake(flops=8e9, down=1000, up=1000, partial=1000)
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, selection="overselect", overselect=2.0,
                        hierarchical=True)
    engine = edge_engine(algo, [device(g) for g in (4, 8, 1, 2)], ["fast", "fast", "slow", "slow"], rounds)
    record, rows = play(engine)[0]
    assert algo.aggregated == [[0, 1]]
    assert {r.client: r.status for r in rows} == {0: "ok", 1: "ok", 2: "cut", 3: "cut"}
    assert record.aggregated == 2 and record.backhaul_bytes_up == 1000
    # the round ends one backhaul upload after the second arrival (the fast cell's last)
    assert record.sim_time_s == pytest.approx(rows[0].finished_at + BACKHAUL_UP_S)
    # cut at the quota while computing: they compute on (8 and 4 s) and their uploads are refused
    assert [(r.compute_s, r.bytes_up) for r in rows[2:]] == [(8.0, 0), (4.0, 0)]


def test_65_cells_of_2_keep_need_arrivals_and_end_one_backhaul_upload_after_flat():
    """100 clients needed over 65 cells of 2 at 1.3x over-selection (all 130 selected): the round
    keeps at least 100 and fewer than 100 + the largest cell's 2, and ends no later than the same
    selection's flat round plus one backhaul upload of one partial (the cells' backhauls are alike)."""
    speeds = np.random.default_rng(29).uniform(0.5, 4.0, 130)
    devices, cells = [device(g) for g in speeds], [f"cell{i // 2:02d}" for i in range(130)]
    sizes = dict(down=1000, up=100_000, flops=2e9)

    def rounds(kind):
        return EngineConfig(max_rounds=1, clients_per_round=100, selection="overselect", overselect=1.3,
                          hierarchical=kind == "hierarchical")

    hier = EdgeFake(partial=100_000, **sizes)
    (record, rows), = play(edge_engine(hier, devices, cells, rounds("hierarchical")))
    flat = FakeAlgo(down_bytes=sizes["down"], up_bytes=sizes["up"], flops=sizes["flops"])
    (flat_record, flat_rows), = play(edge_engine(flat, devices, cells, rounds("flat")))
    one_partial_s = 0.05 + 8 * 100_000 / 4e6  # latency + 0.8 Mbit over a 4 Mbps backhaul
    assert record.selected == flat_record.selected == 130 and flat_record.aggregated == 100
    assert 100 <= record.aggregated < 100 + 2
    assert len(hier.aggregated[0]) == record.aggregated
    assert record.sim_time_s <= flat_record.sim_time_s + one_partial_s
    assert record.backhaul_bytes_up == 100_000 * len({cells[c] for c in hier.aggregated[0]})
    print(f"\n65 cells of 2: aggregated {record.aggregated} of {record.selected}; ends at {record.sim_time_s:.4f} s, "
          f"flat at {flat_record.sim_time_s:.4f} s + one partial's {one_partial_s:.4f} s = "
          f"{flat_record.sim_time_s + one_partial_s:.4f} s")


def test_the_deadline_is_end_to_end_and_a_cell_with_no_arrival_sends_nothing():
    """Each edge stops waiting when what is left of the server's deadline is its message's time
    up the backhaul: the fast cell's partial arrives in time, the slow cell's clients are cut off
    and it sends nothing; the round ends at that cut-off, not after the deadline."""
    algo = EdgeFake(flops=4e9, down=1000, up=1000, partial=1000)
    rounds = EngineConfig(max_rounds=1, clients_per_round=4, deadline_s=3.0, hierarchical=True, cut="push")
    record, rows = play(edge_engine(algo, [device(g) for g in (8, 8, 1, 1)], ["fast", "fast", "slow", "slow"],
                                    rounds))[0]
    assert algo.aggregated == [[0, 1]]
    assert {r.client: r.status for r in rows} == {0: "ok", 1: "ok", 2: "late", 3: "late"}
    assert record.backhaul_bytes_up == 1000  # the slow cell had nothing to forward
    assert record.sim_time_s == pytest.approx(3.0 - BACKHAUL_UP_S)  # the slow edge's cut-off
    assert all(r.compute_s < 4.0 for r in rows if r.status == "late")  # stopped by a push, charged


class Unpriced(EdgeFake):
    """A partial that is larger for fewer uploads than for all of them, which the edge's price of
    its message (the partial of all its clients' uploads) does not foresee."""

    def partial(self, messages, round, edge):
        message = super().partial(messages, round, edge)
        return message if message is None or len(messages) == 2 else sized("partial", round, edge, 10 * self.part)


def test_a_message_that_cannot_reach_the_server_by_the_deadline_is_late_and_counted():
    algo = Unpriced(flops=4e9, down=1000, up=1000, partial=1000)
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, deadline_s=3.0, hierarchical=True)
    record, rows = play(edge_engine(algo, [device(8), device(1)], ["ap", "ap"], rounds))[0]
    # client 0 arrives, client 1 is cut off at 3.0 - 0.052 s; the 10 kB partial needs 0.07 s more
    assert [r.status for r in rows] == ["late", "late"] and record.aggregated == 0
    assert rows[0].note == "its edge's message missed the deadline" and rows[0].upload_s > 0
    assert record.sim_time_s == pytest.approx(3.0) and algo.aggregated == [[]]  # nothing reached the server
    assert record.backhaul_bytes_up == pytest.approx((BACKHAUL_UP_S - 0.05 + 1e-6) * 4e6 / 8, abs=1)
    assert record.backhaul_bytes_up < 10_000


def test_rounds_csv_and_summary_report_the_backhaul(tmp_path, tiny_dict):
    raw = in_cells(tiny_dict, "fedzo", "hierarchical")
    raw["rounds"].update(max=2, clients_per_round=4)
    run_dir = tmp_path / "run"
    result = edgefed("run", write_scenario(tmp_path, raw), "--out", run_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    rounds = read_csv(run_dir / "rounds.csv")
    assert [int(r["backhaul_bytes_up"]) > 0 for r in rounds] == [False, True, True]
    import json
    totals = json.loads((run_dir / "summary.json").read_text())["totals"]
    assert totals["backhaul_bytes_up"] == sum(int(r["backhaul_bytes_up"]) for r in rounds)
    assert totals["backhaul_bytes_down"] == sum(int(r["backhaul_bytes_down"]) for r in rounds)
    flat = read_csv(REPO / "scenarios" / "regression" / "golden" / "fedzo" / "rounds.csv")
    assert "backhaul_bytes_up" not in flat[0]  # flat runs keep their columns


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: [d["fleet"].pop("network"), *(g.pop("cell") for g in d["fleet"]["groups"])],
     ["rounds.aggregation.kind", "fleet.network.cells"]),
    (lambda d: d["fleet"]["groups"][2].pop("cell"), ["fleet.groups.2.cell", "every group in a cell"]),
    (lambda d: d.__setitem__("replay", {"trace": "trace.jsonl"}), ["rounds.aggregation.kind", "replayed"]),
    (lambda d: d["rounds"].__setitem__("aggregation", {"kind": "tree"}), ["rounds.aggregation.kind"]),
    (lambda d: d["rounds"]["aggregation"].__setitem__("edge_rounds", 0), ["rounds.aggregation.edge_rounds", "(got 0)"]),
    (lambda d: d["rounds"]["aggregation"].__setitem__("edge_rounds", "two"), ["rounds.aggregation.edge_rounds"]),
    (lambda d: d["rounds"]["aggregation"].update(kind="flat", edge_rounds=2),
     ["rounds.aggregation.edge_rounds", "kind: hierarchical"]),
    (lambda d: d["rounds"]["aggregation"].__setitem__("edge_rounds", 2),  # decomfl: not defined
     ["rounds.aggregation.edge_rounds", "not defined for decomfl", "fedzo"]),
    (lambda d: [d.__setitem__("algorithm", METHODS["fedzo"]), d["rounds"].update(selection="overselect"),
                d["rounds"]["aggregation"].__setitem__("edge_rounds", 3)], ["rounds.selection", "3 edge rounds"]),
])
def test_bad_hierarchical_input_is_one_line_exit_2(tmp_path, tiny_dict, mutate, needles):
    raw = in_cells(tiny_dict, "decomfl", "hierarchical")
    mutate(raw)
    _assert_one_line_error(edgefed("validate", write_scenario(tmp_path, raw)), *needles)


def test_a_download_the_deadline_cuts_off_on_the_backhaul_stops_with_the_round():
    algo = EdgeFake(down=10_000_000, flops=1e6, up=1000, partial=1000)  # 80 Mbit over the 8 Mbps backhaul: 10.05 s
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, deadline_s=3.0, hierarchical=True)
    engine = edge_engine(algo, [device()] * 2, ["ap", "ap"], rounds)
    record, rows = play(engine)[0]
    cutoff = 3.0 - BACKHAUL_UP_S  # the edge stops waiting when its partial would need the rest
    assert [r.status for r in rows] == ["late", "late"] and record.aggregated == 0
    assert [r.download_s for r in rows] == pytest.approx([cutoff, cutoff]) and record.bytes_down == 0
    assert record.backhaul_bytes_down == pytest.approx((cutoff - 0.05) * 8e6 / 8, abs=1)  # what it sent
    assert record.backhaul_bytes_up == 0 and record.sim_time_s == pytest.approx(cutoff)
    assert engine.sessions.net.users == {}  # nothing left on the links for the next round


# -- K > 1 edge rounds per cloud round (HierFAVG) -------------------------------------------------

class EdgeRoundsFake(EdgeFake):
    """EdgeFake whose model is the list of (round, client) updates applied to it, so an edge's
    model and the server's adoption show which edge rounds' updates they hold."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.model, self.models, self.adopted = [], {}, []

    def aggregate(self, messages):
        return [(m.round, m.client) for m in messages] or None

    def apply(self, update, round, plan):
        if update is not None:
            self.model = self.model + update

    def hold(self):
        return list(self.model)

    def load(self, held):
        self.model = list(held)

    def model_message(self, held, uploads, round, edge):
        self.models[edge] = (held, sorted(m.client for m in uploads))
        return sized("partial", round, edge, self.part)

    def adopt(self, messages):
        self.adopted.append([self.models[m.client] for m in messages])


def two_edge_rounds(k=2, deadline_s=None):
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, deadline_s=deadline_s,
                        hierarchical=True, edge_rounds=k, cut="push")
    algo = EdgeRoundsFake()
    return algo, play(edge_engine(algo, [device(1.0)] * 2, ["ap", "ap"], rounds))[0]


def test_edge_rounds_match_a_hand_computation():
    algo, (record, rows) = two_edge_rounds()
    # edge round 1 as in test_one_cell_matches_a_hand_computation: both arrive at 5.25 s; edge round
    # 2 at once, from the edge over the access link inside the radio's tail: 0.1 + 8/16 = 0.6 s ->
    # 5.85 s, compute 2 s, upload 1.1 s -> 8.95 s; the edge's model up the backhaul 1.05 s -> 10.0 s
    assert record.sim_time_s == pytest.approx(10.0)
    assert [(r.edge_round, r.client, r.status) for r in rows] == [(1, 0, "ok"), (1, 1, "ok"),
                                                                    (2, 0, "ok"), (2, 1, "ok")]
    assert [r.download_s for r in rows] == pytest.approx([2.15, 2.15, 0.6, 0.6])
    assert [r.idle_s for r in rows] == pytest.approx([0.0, 0.0, 1.05, 1.05])
    assert (record.selected, record.aggregated, record.dropped) == (4, 4, 0)  # client updates, K per client
    assert (record.backhaul_bytes_down, record.backhaul_bytes_up) == (1_000_000, 500_000)  # once each way
    assert (record.bytes_down, record.bytes_up) == (4_000_000, 4_000_000)
    # the edge applied edge round 1's updates (learning round 1), then round 2's; the server adopted that
    assert algo.adopted == [[([(1, 0), (1, 1), (2, 0), (2, 1)], [0, 1])]]
    assert algo.model == []  # the host holds the global model again


def test_edge_rounds_stop_at_the_edges_cut_off():
    """K = 3 under a 12 s deadline: the third edge round cannot finish by the cut-off (12 - 1.05 s),
    so its clients are cut off there (stopped by a push) and the edge forwards the model of its first two."""
    algo, (record, rows) = two_edge_rounds(k=3, deadline_s=12.0)
    assert [(r.edge_round, r.status) for r in rows] == [(1, "ok")] * 2 + [(2, "ok")] * 2 + [(3, "late")] * 2
    assert [r.compute_s for r in rows[4:]] == pytest.approx([12.0 - 1.05 - 9.55] * 2, abs=1e-5)  # from 9.55 s
    assert record.sim_time_s == pytest.approx(12.0) and record.aggregated == 4
    assert algo.adopted == [[([(1, 0), (1, 1), (2, 0), (2, 1)], [0, 1])]]


def test_the_cloud_adopts_the_edges_models_weighted_mean_and_one_model_as_it_is():
    model, data = tiny_setup(num_clients=4)
    algo = FedZO(model, data, zo_cfg(), 0)
    start = algo.hold()
    up, down = [t + 1.0 for t in start], [t - 3.0 for t in start]
    up[0].view(-1)[0] = -0.0  # a signed zero survives the mean of one model too
    uploads = [Message("weights", 1, c, {}) for c in range(4)]
    examples = [len(data.parts[c]) for c in range(4)]
    one, three = algo.model_message(up, uploads[:1], 1, 0), algo.model_message(down, uploads[1:], 1, 1)
    assert one.arrays[WEIGHT].tolist() == [examples[0]] and three.arrays[WEIGHT].tolist() == [sum(examples[1:])]
    algo.adopt([one, three])
    for got, a, b in zip(algo.trainable.params, up, down):
        want = (examples[0] * a.double() + sum(examples[1:]) * b.double()) / sum(examples)
        torch.testing.assert_close(got.detach().double(), want, rtol=0, atol=1e-6)
    algo.adopt([one])
    assert all(torch.equal(got.detach().view(torch.int32), want.view(torch.int32))
               for got, want in zip(algo.trainable.params, up))


def test_a_client_that_goes_off_while_it_waits_for_its_edge_takes_no_further_edge_round():
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, hierarchical=True, edge_rounds=2)
    algo = EdgeRoundsFake()
    engine = edge_engine(algo, [device(2.0), device(1.0)], ["ap", "ap"], rounds)
    engine.sessions.avail.off_at = lambda cid, now, round: 5.0 if cid == 0 else math.inf
    (record, rows), = play(engine)
    # client 0 arrives at 4.25 s and goes off at 5.0 s, before client 1 arrives (5.25 s) and the
    # edge starts edge round 2: only client 1 plays it, 5.25 + 0.6 + 2 + 1.1 s, then the backhaul 1.05 s
    assert [(r.edge_round, r.client, r.status) for r in rows] == [(1, 0, "ok"), (1, 1, "ok"), (2, 1, "ok")]
    assert rows[0].finished_at == pytest.approx(4.25) and record.sim_time_s == pytest.approx(10.0)
    assert algo.adopted == [[([(1, 0), (1, 1), (2, 1)], [0, 1])]]


def in_one_cell(tiny: dict, method: str, kind: str, rounds: int, edge_rounds: int = 1) -> dict:
    """The tiny scenario with its whole fleet in one cell and every client in every round."""
    raw = copy.deepcopy(tiny)
    raw["algorithm"] = METHODS[method]
    raw["fleet"]["network"] = {"cells": {"ap": CELLS["north"]}}
    for group in raw["fleet"]["groups"]:
        group["cell"] = "ap"
    aggregation = {"kind": kind, **({"edge_rounds": edge_rounds} if edge_rounds > 1 else {})}
    raw["rounds"].update(max=rounds, clients_per_round=8, eval_every=1, aggregation=aggregation)
    return raw


def run_to_the_end(raw: dict):
    """Run a scenario in memory: its engine after the last round and its rounds (each with its
    record and client rows)."""
    engine = build_run(validate_scenario(raw, REPO), REPO).engine
    rounds = []

    class Keep:
        def round_configured(self, engine, round):
            pass

        def round_done(self, engine, round):
            rounds.append(round)

    engine.observers = [Keep()]
    engine.run()
    return engine, rounds


@pytest.mark.parametrize("method", ["fedavg", "fedzo"])
def test_one_cell_with_k_edge_rounds_learns_as_k_flat_rounds_bit_for_bit(tiny_dict, method):
    """One cell, every client in every edge round: two cloud rounds of K = 3 edge rounds are six
    flat rounds - the same weights and evaluations to the bit (the edge's rounds are the flat
    server's, and the mean of one edge model is that model)."""
    k, cloud_rounds = 3, 2
    flat_engine, flat = run_to_the_end(in_one_cell(tiny_dict, method, "flat", k * cloud_rounds))
    hier_engine, hier = run_to_the_end(in_one_cell(tiny_dict, method, "hierarchical", cloud_rounds, k))
    flat, hier = [r.record for r in flat], [r.record for r in hier]
    assert len(hier) == cloud_rounds + 1 and len(flat) == k * cloud_rounds + 1
    for r in range(cloud_rounds + 1):
        assert (hier[r].accuracy, hier[r].loss) == (flat[k * r].accuracy, flat[k * r].loss)
    assert [r.aggregated for r in hier[1:]] == [8 * k] * cloud_rounds
    for a, b in zip(hier_engine.algo.trainable.params, flat_engine.algo.trainable.params, strict=True):
        assert torch.equal(a.detach().view(torch.int32), b.detach().view(torch.int32))
    assert hier[-1].loss != flat[0].loss  # it learned something


def test_edge_rounds_write_one_round_row_per_cloud_round_and_an_edge_round_column(tmp_path, tiny_dict):
    raw = in_cells(tiny_dict, "fedzo", "hierarchical")
    raw["rounds"]["aggregation"]["edge_rounds"] = 2
    run_dir = tmp_path / "run"
    result = edgefed("run", write_scenario(tmp_path, raw), "--out", run_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    rounds, clients = read_csv(run_dir / "rounds.csv"), read_csv(run_dir / "clients.csv")
    assert [r["round"] for r in rounds] == ["0", "1", "2"]
    assert [(r["selected"], r["aggregated"]) for r in rounds[1:]] == [("16", "16")] * 2  # 8 clients x 2
    trained = [c for c in clients if c["round"] != "0"]
    assert [c["edge_round"] for c in trained if c["round"] == "1"] == ["1"] * 8 + ["2"] * 8
    assert all(int(r["backhaul_bytes_up"]) > 0 for r in rounds[1:])
    one = tmp_path / "one"
    raw["rounds"]["aggregation"]["edge_rounds"] = 1
    assert edgefed("run", write_scenario(tmp_path, raw, "one.yaml"), "--out", one, "--quiet").returncode == 0
    assert "edge_round" not in read_csv(one / "clients.csv")[0]


def test_a_run_with_edge_rounds_interrupted_then_resumed_matches_one_straight_through(tmp_path, tiny_dict):
    """The edge models live inside a cloud round, so a checkpoint between cloud rounds holds all
    there is: a resumed run writes the same rows as one that was not stopped."""
    from edgefed import regress
    from edgefed.runner import run_scenario
    from tests.test_regression import StopAfter

    raw = in_cells(tiny_dict, "fedavg", "hierarchical")
    raw["rounds"].update(max=3, clients_per_round=5, eval_every=1)
    raw["rounds"]["aggregation"]["edge_rounds"] = 2
    scenario = validate_scenario(raw, REPO)
    run_scenario(scenario, REPO, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, REPO, tmp_path / "resumed", progress=StopAfter(1))
    run_scenario(scenario, REPO, tmp_path / "resumed", resume=True)
    assert regress.compare(tmp_path / "straight", tmp_path / "resumed") == []
