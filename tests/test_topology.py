"""The network as a graph (``fleet.network.topology``): paths shortest by latency with ties to the
first name sequence (against networkx); shared links along paths against hand computations; the
aggregator tree at chosen tiers against a hand computation, its end-to-end deadline, and every
registry method's two-level fold against the flat fold; ``at: [cell]`` on a one-tier graph is
today's cells byte for byte; bad graphs are one line."""
import copy
from dataclasses import asdict, replace

import networkx as nx
import numpy as np
import pytest
import simpy
from typer.testing import CliRunner

from edgefed.algorithms.registry import METHODS as REGISTRY
from edgefed.build import build_run
from edgefed.cli import app
from edgefed.scenario import validate_scenario
from edgefed.simulator.engine import Client, Engine
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.network import Network
from edgefed.simulator.topology import Topology, TopologySpec
from tests.conftest import REPO, write_scenario
from tests.test_hierarchical import METHODS, EdgeFake, EdgeRoundsFake, as_arrays, magnitudes, run_to_the_end, sized
from tests.test_network import MBIT, _link
from tests.test_systems import LINK, NO_EVALUATION, device, play


def graph(links, kinds) -> Topology:
    """A topology from (a, b, up, down, latency) tuples and node -> kind."""
    return Topology(TopologySpec(nodes={n: {"kind": k} for n, k in kinds.items()},
                                 links=[dict(a=a, b=b, up_mbps=u, down_mbps=d, latency_s=s) for a, b, u, d, s in links]))


# -- paths ---------------------------------------------------------------------------------------

def test_paths_are_shortest_by_latency_and_ties_go_to_the_first_names():
    # x reaches the cloud through p or q in 0.75 s either way (exact in binary): p comes first;
    # y's direct link (1.0 s) loses to y-q-cloud (0.625 s)
    top = graph([("x", "p", 1, 1, 0.25), ("x", "q", 1, 1, 0.25), ("p", "c", 1, 1, 0.5), ("q", "c", 1, 1, 0.5),
                 ("y", "c", 1, 1, 1.0), ("y", "q", 1, 1, 0.125)],
                dict(x="ap", y="ap", p="edge", q="edge", c="cloud"))
    assert top.paths == {"x": ("x", "p", "c"), "y": ("y", "q", "c"), "p": ("p", "c"), "q": ("q", "c"), "c": ("c",)}
    assert [key for key, _ in top.routes["x"]] == [("link", 0), ("link", 2)]
    assert top.aggregators("x", ("edge",)) == ["p"] and top.aggregators("x", ("ap", "edge")) == ["x", "p"]
    assert top.tier_of_link(2) == "edge" and top.tier_of_link(0) == "ap"


def test_paths_match_networkx_shortest_paths_with_the_name_rule_on_random_graphs():
    """Latencies in eighths, so networkx's float sums are exact and its ties are the rule's."""
    rng = np.random.default_rng(41)
    for _ in range(30):
        n = int(rng.integers(3, 12))
        names = [f"n{i}" for i in rng.permutation(n)]
        links = {frozenset((names[i], names[int(rng.integers(0, i))])) for i in range(1, n)}  # a spanning tree
        links |= {frozenset(rng.choice(names, 2, replace=False).tolist()) for _ in range(n)}
        lat = {pair: int(rng.integers(1, 5)) / 8 for pair in links}
        top = graph([(*sorted(p), 1, 1, s) for p, s in lat.items()], {m: "cloud" if m == names[0] else "edge"
                                                                       for m in names})
        g = nx.Graph()
        g.add_weighted_edges_from([(*sorted(p), s) for p, s in lat.items()], weight="latency")
        for m in names:
            assert top.paths[m] == min(tuple(p) for p in nx.all_shortest_paths(g, m, names[0], weight="latency"))


# -- shared links ----------------------------------------------------------------------------------

METRO = [("a1", "e1", 100, 100, 0.001), ("a2", "e2", 100, 100, 0.001), ("e1", "r", 100, 100, 0.001),
         ("e2", "r", 6, 100, 0.001), ("r", "c", 10, 10, 0.001)]
KINDS = dict(a1="ap", a2="ap", e1="edge", e2="edge", r="region", c="cloud")


def uploads(top: Topology, at: dict[int, str], mbits: dict[int, float]) -> dict[int, float]:
    """Each client's upload of ``mbits`` from node ``at`` over a 1 Gbps access link; finish times."""
    env = simpy.Environment()
    net = Network(env, lambda cid: (_link(1000.0), at[cid]), top.routes)
    done = {}
    for cid, size in mbits.items():
        tr = net.start(cid, size * MBIT, "up")
        tr.done.callbacks.append(lambda _ev, cid=cid: done.__setitem__(cid, env.now))
    env.run()
    return done


def test_two_flows_behind_different_edges_share_the_metro_link():
    # alone: 10 Mbit over the 10 Mbps metro link, after 3 links' latency
    assert uploads(graph(METRO, KINDS), {0: "a1"}, {0: 10.0}) == {0: pytest.approx(0.003 + 1.0)}
    # together: their paths meet only at r-c, which gives each 5 Mbps
    assert uploads(graph(METRO, KINDS), {0: "a1", 1: "a2"}, {0: 10.0, 1: 10.0}) == {
        0: pytest.approx(0.003 + 2.0), 1: pytest.approx(0.003 + 2.0)}


def test_the_bottleneck_moves_to_the_edge_uplink_when_a_flow_ends():
    # both at 5 Mbps on the metro link (e2-r's 6 Mbps is not yet binding); flow 0's 10 Mbit end at 2 s;
    # flow 1, alone, is then held by e2-r at 6 Mbps: its other 20 Mbit take 20/6 s
    done = uploads(graph(METRO, KINDS), {0: "a1", 1: "a2"}, {0: 10.0, 1: 30.0})
    assert done == {0: pytest.approx(0.003 + 2.0), 1: pytest.approx(0.003 + 2.0 + 20 / 6)}


# -- the aggregator tree ---------------------------------------------------------------------------

TREE = [("a1", "e1", 4.0, 8.0, 0.05), ("a2", "e2", 4.0, 8.0, 0.05), ("e1", "r", 4.0, 8.0, 0.05),
        ("e2", "r", 4.0, 8.0, 0.05), ("r", "c", 4.0, 8.0, 0.05)]


class TreeFake(EdgeFake):
    """EdgeFake whose partial of partials lists the clients under them."""

    def partial(self, messages, round, edge):
        if not messages:
            return None
        self.cells[edge] = [c for m in messages for c in (self.cells[m.client] if m.kind == "partial" else [m.client])]
        return sized("partial", round, edge, self.part)


def tree_engine(algo, devices, nodes, at=("edge", "region"), **rounds):
    top = graph(TREE, KINDS)
    clients = [Client(i, d.name, d, LINK, cell=n) for i, (d, n) in enumerate(zip(devices, nodes))]
    cfg = EngineConfig(**{"max_rounds": 1, "clients_per_round": len(devices), "hierarchical": True, "topology": top,
                          "aggregate_at": at, **rounds})
    engine = Engine(algo, clients, cfg)
    engine.schedule = NO_EVALUATION
    return engine


def test_one_client_two_tiers_matches_a_hand_computation():
    algo = TreeFake()
    (record, rows), = play(tree_engine(algo, [device(1.0)], ["a1"]))
    # down: c->r 0.05 + 8 Mbit / 8 Mbps = 1.05 s, then r->e1 the same: at e1 at 2.1 s; then the client over
    # its access link and a1-e1: promotion 0.5 + latency 0.1 + 0.05, 8 Mbit at min(16, 8) Mbps = 1 s -> 3.75 s
    # compute 2 s -> 5.75 s; up: 0.1 + 0.05 + 8 Mbit at min(8, 4) Mbps = 2 s -> 7.9 s
    # e1's 4 Mbit partial to r: 0.05 + 1 s -> 8.95 s; r's to the cloud: 1.05 s -> 10.0 s
    assert rows[0].download_s == pytest.approx(3.75) and rows[0].upload_s == pytest.approx(2.15)
    assert record.sim_time_s == pytest.approx(10.0)
    assert (record.backhaul_bytes_down, record.backhaul_bytes_up) == (2 * 1_000_000, 2 * 500_000)
    assert record.links == {0: [1_000_000, 1_000_000], 2: [500_000, 1_000_000], 4: [500_000, 1_000_000]}
    assert algo.aggregated == [[0]]


def test_each_tier_forwards_one_message_and_receives_each_download_once():
    algo = TreeFake(down=10_000, up=20_000, partial=30_000, flops=1e6)
    (record, rows), = play(tree_engine(algo, [device()] * 3, ["a1", "a1", "a2"]))
    assert algo.aggregated == [[0, 1, 2]] and record.aggregated == 3
    # e1, e2 and r send one partial each; r receives the download once, e1 and e2 once each from r
    assert (record.backhaul_bytes_up, record.backhaul_bytes_down) == (3 * 30_000, 3 * 10_000)
    assert record.links == {0: [2 * 20_000, 2 * 10_000], 1: [20_000, 10_000], 2: [30_000, 10_000],
                            3: [30_000, 10_000], 4: [30_000, 10_000]}
    (record, _), = play(tree_engine(TreeFake(down=10_000, up=20_000, partial=30_000, flops=1e6), [device()] * 3,
                                    ["a1", "a1", "a2"], at=("region",)))
    # at the region only: each client's own transfers cross its edge's link too, and one partial goes up
    assert record.backhaul_bytes_up == 30_000 and record.links[2] == [2 * 20_000, 2 * 10_000]


def test_the_deadline_holds_end_to_end_across_tiers():
    """e2's only client is too slow: e2 stops at its cut-off - the deadline less r's and its own
    message's time up - with nothing to send; r then forwards e1's partial, arriving in time."""
    algo = TreeFake(flops=8e9, down=1000, up=1000, partial=1000)
    (record, rows), = play(tree_engine(algo, [device(8), device(1)], ["a1", "a2"], deadline_s=6.0))
    hop_s = 0.05 + 8 * 1000 / 4e6  # a 1000-byte partial up one 4 Mbps link
    assert {r.client: r.status for r in rows} == {0: "ok", 1: "late"} and algo.aggregated == [[0]]
    assert record.sim_time_s == pytest.approx(6.0 - 2 * hop_s - 2e-6 + hop_s)
    assert record.sim_time_s <= 6.0 and record.backhaul_bytes_up == 2000


class TreeRoundsFake(EdgeRoundsFake):
    """EdgeRoundsFake whose partial of models (a tier above the lowest) holds what they held."""

    def partial(self, messages, round, edge):
        self.models[edge] = (sorted(u for m in messages for u in self.models[m.client][0]),
                             sorted(c for m in messages for c in self.models[m.client][1]))
        return sized("partial", round, edge, self.part)


def test_edge_rounds_apply_at_the_lowest_tier_and_the_region_forwards_their_models_partial():
    algo = TreeRoundsFake()
    (record, rows), = play(tree_engine(algo, [device(1.0)] * 3, ["a1", "a1", "a2"], edge_rounds=2))
    assert [(r.edge_round, r.client, r.status) for r in rows] == [(k, c, "ok") for k in (1, 2) for c in range(3)]
    # e1 and e2 each played two edge rounds on their own model; r forwarded one message holding both
    assert algo.adopted == [[([(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)], [0, 1, 2])]]
    assert record.backhaul_bytes_up == 3 * algo.part and record.aggregated == 6


def test_overselection_keeps_the_first_arrivals_across_the_tree():
    """Two of four wanted: both fast clients sit under e1, so the one quota closes e2 too, which
    sends nothing; the region forwards e1's partial alone. The slow two are cut by the quota
    (status ``cut``): they finish computing and are refused, sending no payload up the tree."""
    algo = TreeFake(flops=8e9, down=1000, up=1000, partial=1000)
    (record, rows), = play(tree_engine(algo, [device(g) for g in (4, 8, 1, 2)], ["a1", "a1", "a2", "a2"],
                                       clients_per_round=2, selection="overselect", overselect=2.0))
    assert {r.client: r.status for r in rows} == {0: "ok", 1: "ok", 2: "cut", 3: "cut"}
    assert algo.aggregated == [[0, 1]] and record.backhaul_bytes_up == 2 * 1000  # e1's and r's


@pytest.mark.parametrize("method", list(METHODS))
def test_a_two_level_fold_equals_the_flat_fold_up_to_float_rounding(tiny_dict, method):
    """Six real uploads folded as ((2, 2), 2) - two cells under an edge, and a cell beside it -
    against the flat mean. Each mean of k terms accumulated in float32 and rounded to the wire
    dtype is off the exact mean by at most 2k u S per coordinate (u = 2**-24, S = sum_i w_i |x_i|),
    and a mean of means carries its terms' errors weighted to at most their maximum; so the fold is
    within 2 u S times the largest fan-in summed over its three levels (2 + 2 + 2), and the flat
    mean within 2 * 6 u S: they differ by at most 2 (6 + 6) u S."""
    raw = copy.deepcopy(tiny_dict)
    raw["algorithm"] = METHODS[method]
    algo = build_run(validate_scenario(raw, REPO), REPO).engine.algo
    plan = algo.configure_round(1, list(range(6)))
    ups = [algo.client_update(c, 1, plan)[0] for c in range(6)]
    edge = algo.partial([algo.partial(ups[0:2], 1, 0), algo.partial(ups[2:4], 1, 1)], 1, 2)
    folded = as_arrays(algo.aggregate([edge, algo.partial(ups[4:6], 1, 3)]))
    flat, scale = as_arrays(algo.aggregate(ups)), as_arrays(algo.aggregate(magnitudes(ups)))
    bound = 2 * (6 + 6) * 2.0 ** -24
    for got, want, s in zip(folded, flat, scale, strict=True):
        assert np.all(np.abs(got - want) <= bound * s)
    assert any(np.any(w != 0) for w in flat)


# -- one tier is today's cells ---------------------------------------------------------------------

CELLS = {"north": {"up_mbps": 2.0, "down_mbps": 5.0, "latency_s": 0.01},
         "south": {"up_mbps": 1.0, "down_mbps": 3.0, "latency_s": 0.02},
         "west": {"up_mbps": 4.0, "down_mbps": 4.0, "latency_s": 0.005}}


def one_tier(tiny: dict, method: str, topology: bool) -> dict:
    raw = copy.deepcopy(tiny)
    raw["algorithm"] = METHODS[method]
    if topology:
        raw["fleet"]["network"] = {"topology": {
            "nodes": {**{name: {"kind": "cell"} for name in CELLS}, "dc": {"kind": "cloud"}},
            "links": [{"a": name, "b": "dc", **spec} for name, spec in CELLS.items()]}}
    else:
        raw["fleet"]["network"] = {"cells": CELLS}
    for group, cell in zip(raw["fleet"]["groups"], CELLS):
        group["attach" if topology else "cell"] = cell
    # a deadline that cuts some clients off (decomfl's rounds take ~0.43 s, fedzo's ~46 s)
    raw["rounds"].update(max=2, clients_per_round=6, eval_every=2, deadline_s=0.3 if method == "decomfl" else 40.0,
                         aggregation={"kind": "hierarchical", **({"at": ["cell"]} if topology else {})})
    return raw


def rounds_of(raw: dict) -> list:
    """Each round's record (host seconds and per-link bytes left out) and client rows."""
    return [({k: v for k, v in asdict(r.record).items() if k not in ("host_seconds", "links")},
             [asdict(row) for row in r.rows]) for r in run_to_the_end(raw)[1]]


@pytest.mark.parametrize("method", ["decomfl", "fedzo"])
def test_at_cell_on_a_one_tier_graph_is_todays_cells_byte_for_byte(tiny_dict, method):
    cells, graph_run = rounds_of(one_tier(tiny_dict, method, False)), rounds_of(one_tier(tiny_dict, method, True))
    assert graph_run == cells
    assert any(row["status"] == "late" for _, rows in cells for row in rows)  # the deadline cut someone
    assert all(record["backhaul_bytes_up"] > 0 for record, _ in cells[1:])


# -- bad graphs ------------------------------------------------------------------------------------

def with_graph(tiny: dict, nodes=None, links=None, attach=("a1", "a1", "a2"), at=None) -> dict:
    raw = copy.deepcopy(tiny)
    raw["fleet"]["network"] = {"topology": {
        "nodes": nodes if nodes is not None else {n: {"kind": k} for n, k in KINDS.items()},
        "links": links if links is not None else [dict(a=a, b=b, up_mbps=u, down_mbps=d, latency_s=s)
                                                  for a, b, u, d, s in METRO]}}
    for group, node in zip(raw["fleet"]["groups"], attach):
        group["attach"] = node
    if at is not None:
        raw["rounds"]["aggregation"] = {"kind": "hierarchical", "at": at}
    return raw


LINKS = [dict(a=a, b=b, up_mbps=u, down_mbps=d, latency_s=s) for a, b, u, d, s in METRO]
BAD_GRAPHS = {
    "unknown node in a link": (dict(links=LINKS + [dict(a="e1", b="mars", up_mbps=1, down_mbps=1, latency_s=1)]),
                               ["links.5", "unknown node 'mars'"]),
    "unknown attach node": (dict(attach=("a1", "zz", "a2")), ["fleet.groups.1.attach", "unknown node 'zz'"]),
    "no cloud": (dict(nodes={**{n: {"kind": k} for n, k in KINDS.items()}, "c": {"kind": "region"}}),
                 ["exactly one node of kind cloud", "found 0"]),
    "two clouds": (dict(nodes={**{n: {"kind": k} for n, k in KINDS.items()}, "r": {"kind": "cloud"}}),
                   ["exactly one node of kind cloud", "c, r"]),
    "disconnected": (dict(links=LINKS[1:]), ["nodes.a1", "cannot reach the cloud"]),
    "zero capacity": (dict(links=[{**LINKS[0], "up_mbps": 0}] + LINKS[1:]), ["links.0.up_mbps"]),
    "zero latency": (dict(links=[{**LINKS[0], "latency_s": 0}] + LINKS[1:]), ["links.0.latency_s"]),
    "infinite latency": (dict(links=[{**LINKS[0], "latency_s": float("inf")}] + LINKS[1:]), ["links.0.latency_s"]),
    "capacity not a number": (dict(links=[{**LINKS[0], "down_mbps": float("nan")}] + LINKS[1:]),
                              ["links.0.down_mbps"]),
    "unknown kind": (dict(nodes={**{n: {"kind": k} for n, k in KINDS.items()}, "e1": {"kind": "metro"}}),
                     ["nodes.e1.kind"]),
    "a second link": (dict(links=LINKS + [LINKS[0]]), ["links.5", "a second link"]),
    "no aggregator on a path": (dict(at=["ap"], attach=("a1", "e1", "a2")), ["fleet.groups.1.attach", "e1 -> r -> c"]),
    "tiers without hierarchical": (dict(at=["edge"]), []),
}


@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_a_bad_graph_is_one_line_exit_2(tmp_path, tiny_dict, case):
    kwargs, needles = BAD_GRAPHS[case]
    raw = with_graph(tiny_dict, **kwargs)
    if case == "tiers without hierarchical":
        raw["rounds"]["aggregation"] = {"kind": "flat", "at": ["edge"]}
        needles = ["rounds.aggregation.at"]
    result = CliRunner().invoke(app, ["validate", str(write_scenario(tmp_path, raw))])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_flat_run_on_a_topology_writes_bytes_per_tier_and_links(tmp_path, tiny_dict, mode):
    raw = with_graph(tiny_dict)
    raw["rounds"].update(max=1, clients_per_round=4, **({"mode": "async", "concurrency": 4, "buffer": 2}
                                                        if mode == "async" else {}))
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, raw)), "--out", str(tmp_path / "o"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    from edgefed.results import read_rows
    rounds, links = read_rows(tmp_path / "o" / "rounds.csv"), read_rows(tmp_path / "o" / "links.csv")
    assert [r["link"] for r in links if r["round"] == "1"] == ["a1-e1", "a2-e2", "e1-r", "e2-r", "r-c"]
    # every upload crosses the metro link: the region tier carries what the clients sent
    assert int(rounds[1]["region_bytes_up"]) == int(rounds[1]["bytes_up"]) > 0
    assert int(rounds[1]["ap_bytes_up"]) + int(rounds[1].get("edge_bytes_up", 0)) > 0
    assert "backhaul_bytes_up" not in rounds[0]


def test_a_run_on_a_topology_interrupted_then_resumed_matches_one_straight_through(tmp_path, tiny_dict):
    """links.csv is cut back with rounds.csv on a resume, so both equal an uninterrupted run's."""
    from edgefed import regress
    from edgefed.runner import run_scenario
    from tests.test_regression import StopAfter

    raw = with_graph(tiny_dict, at=["edge", "region"])
    raw["rounds"].update(max=2, clients_per_round=5, eval_every=1)
    scenario = validate_scenario(raw, REPO)
    run_scenario(scenario, REPO, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, REPO, tmp_path / "resumed", progress=StopAfter(1))
    run_scenario(scenario, REPO, tmp_path / "resumed", resume=True)
    assert regress.compare(tmp_path / "straight", tmp_path / "resumed") == []
    links = [(tmp_path / run / "links.csv").read_text() for run in ("straight", "resumed")]
    assert links[0] == links[1] and links[0].count("\n") == 1 + 3 * len(METRO)
