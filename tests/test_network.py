"""Processor sharing on shared links: finish times against the fluid model worked out by hand, and
the component-wise water-filling against plain progressive filling on random topologies."""
import math
from types import SimpleNamespace

import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefed.simulator.network import CellSpec, Network, cell_routes, water_filling

MBIT = 1e6 / 8  # bytes in one megabit


def _link(mbps: float, latency: float = 0.0, loss: float = 0.0):
    return SimpleNamespace(up_mbps=mbps, down_mbps=mbps, latency_s=latency, loss=loss)


def _cell_network(n_clients: int, backhaul_mbps: float, access_mbps: float = 1000.0, latency: float = 0.0):
    """n clients with fast access links behind one access point whose backhaul is the bottleneck."""
    env = simpy.Environment()
    cells = {"ap": CellSpec(up_mbps=backhaul_mbps, down_mbps=backhaul_mbps, latency_s=latency)}
    access = _link(access_mbps)
    return env, Network(env, lambda cid: (access, "ap"), cell_routes(cells))


def _finish_times(env, net, starts: dict[int, float], nbytes: float, direction="up"):
    done = {}

    def go(cid, at):
        yield env.timeout(at)
        tr = net.start(cid, nbytes, direction)
        yield tr.done
        done[cid] = env.now

    for cid, at in starts.items():
        env.process(go(cid, at))
    env.run()
    return done


def test_two_transfers_sharing_a_link_take_twice_as_long_as_one():
    env, net = _cell_network(2, backhaul_mbps=10.0, latency=0.05)
    alone = _finish_times(env, net, {0: 0.0}, 10 * MBIT)
    assert alone[0] == pytest.approx(0.05 + 1.0)  # 10 Mbit at 10 Mbps after 50 ms
    env, net = _cell_network(2, backhaul_mbps=10.0, latency=0.05)
    both = _finish_times(env, net, {0: 0.0, 1: 0.0}, 10 * MBIT)
    assert both[0] == pytest.approx(0.05 + 2.0) and both[1] == pytest.approx(0.05 + 2.0)


def test_rates_are_recomputed_when_a_transfer_starts_and_ends():
    # A alone at 10 Mbps for 0.4 s (4 Mbit), then both at 5 Mbps: A's last 6 Mbit take 1.2 s (ends
    # at 1.6 s), by which B has sent 6 Mbit; B's last 4 Mbit then run alone at 10 Mbps: ends at 2.0 s.
    env, net = _cell_network(2, backhaul_mbps=10.0)
    done = _finish_times(env, net, {0: 0.0, 1: 0.4}, 10 * MBIT)
    assert done[0] == pytest.approx(1.6)
    assert done[1] == pytest.approx(2.0)


def test_many_clients_behind_one_access_point_take_longer_than_one():
    env, net = _cell_network(100, backhaul_mbps=100.0, access_mbps=20.0)
    one = _finish_times(env, net, {0: 0.0}, 10 * MBIT)[0]
    env, net = _cell_network(100, backhaul_mbps=100.0, access_mbps=20.0)
    hundred = _finish_times(env, net, {i: 0.0 for i in range(100)}, 10 * MBIT)
    assert one == pytest.approx(0.5)  # the 20 Mbps access link is the bottleneck alone
    assert max(hundred.values()) == pytest.approx(10.0)  # 1000 Mbit through 100 Mbps


def test_up_and_down_do_not_share_and_loss_reduces_goodput():
    env, net = _cell_network(2, backhaul_mbps=10.0)
    done = {}

    def go(cid, direction):
        tr = net.start(cid, 10 * MBIT, direction)
        yield tr.done
        done[direction] = env.now

    env.process(go(0, "up"))
    env.process(go(1, "down"))
    env.run()
    assert done == {"up": pytest.approx(1.0), "down": pytest.approx(1.0)}
    env, net = _cell_network(1, backhaul_mbps=10.0)
    net.routes.update(cell_routes({"ap": CellSpec(up_mbps=10.0, down_mbps=10.0, loss=0.2)}))
    assert _finish_times(env, net, {0: 0.0}, 8 * MBIT)[0] == pytest.approx(1.0)  # 8 Mbit at 8 Mbps


def test_cancel_frees_the_link_and_keeps_the_bits_sent():
    env, net = _cell_network(2, backhaul_mbps=10.0)
    transfers = {}
    done = {}

    def go(cid):
        transfers[cid] = tr = net.start(cid, 10 * MBIT, "up")
        yield tr.done
        done[cid] = env.now

    def drop_first():
        yield env.timeout(1.0)
        net.cancel(transfers[0])

    env.process(go(0))
    env.process(go(1))
    env.process(drop_first())
    env.run()
    assert transfers[0].sent == pytest.approx(5e6)  # 1 s at 5 Mbps
    assert 0 not in done
    assert done[1] == pytest.approx(1.5)  # 5 Mbit left at the full 10 Mbps


def test_max_min_gives_a_bottlenecked_flow_less_and_the_rest_the_leftover():
    # flow 0 crosses links a (cap 2) and b (cap 10); flows 1, 2 cross only b
    rates = water_filling([["a", "b"], ["b"], ["b"]], {"a": 2.0, "b": 10.0}.__getitem__)
    assert rates == pytest.approx([2.0, 4.0, 4.0])


# -- the reference: progressive filling over every active flow, re-run at every start and end ------

def progressive_filling(paths, capacity):
    """Raise all rates together; a link that fills freezes its flows (one pass per bottleneck)."""
    rates = [0.0] * len(paths)
    left = {r: capacity(r) for p in paths for r in p}
    active = set(range(len(paths)))
    while active:
        users = {}
        for i in sorted(active):
            for r in paths[i]:
                users.setdefault(r, []).append(i)
        bottleneck = min(users, key=lambda r: left[r] / len(users[r]))
        share = left[bottleneck] / len(users[bottleneck])
        for i in users[bottleneck]:
            rates[i] = share
            for r in paths[i]:
                left[r] -= share
            active.discard(i)
    return rates


def reference_finish_times(flows, capacity):
    """Event-driven fluid model with every rate recomputed at each start and end.
    ``flows``: (join time, bits, path) in any order; returns each flow's finish time."""
    t, sent, rates, active, done = 0.0, {}, {}, [], {}
    pending = sorted(range(len(flows)), key=lambda i: flows[i][0])
    while pending or active:
        finish = min(((flows[i][1] - sent[i]) / rates[i] + t for i in active), default=math.inf)
        join = flows[pending[0]][0] if pending else math.inf
        now = min(finish, join)
        for i in active:
            sent[i] += rates[i] * (now - t)
        t = now
        for i in [i for i in active if flows[i][1] - sent[i] <= 1e-6 * max(1.0, flows[i][1])]:
            active.remove(i)
            done[i] = t
        while pending and flows[pending[0]][0] <= t:
            i = pending.pop(0)
            active.append(i)
            sent[i] = 0.0
        rates = dict(zip(active, progressive_filling([flows[i][2] for i in active], capacity)))
    return done


def topology():
    """Random clients: each on its own access link, some behind shared cells with a backhaul."""
    return st.fixed_dictionaries({
        "cells": st.lists(st.floats(1.0, 100.0), min_size=0, max_size=3),
        "clients": st.lists(st.tuples(st.floats(1.0, 100.0), st.integers(-1, 2)), min_size=1, max_size=12),
    })


def _paths(top, directions):
    cells = len(top["cells"])
    caps, paths = {}, []
    for cid, ((access, cell), direction) in enumerate(zip(top["clients"], directions)):
        path = [(("client", cid), direction)]
        caps[path[0]] = access
        if cells and cell >= 0:
            path.append((("cell", cell % cells), direction))
            caps[path[1]] = top["cells"][cell % cells]
        paths.append(path)
    return paths, caps


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=topology(), data=st.data())
def test_water_filling_gives_progressive_filling_rates(top, data):
    directions = data.draw(st.lists(st.sampled_from(["up", "down"]), min_size=len(top["clients"]),
                                    max_size=len(top["clients"])))
    paths, caps = _paths(top, directions)
    assert water_filling(paths, caps.__getitem__) == pytest.approx(progressive_filling(paths, caps.__getitem__),
                                                                   rel=1e-12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=topology(), data=st.data())
def test_component_wise_rerating_finishes_every_transfer_when_global_rerating_does(top, data):
    """Transfers that start at random times on random topologies (shared cells, backhauls, lone
    access links) finish when a global re-rating at every start and end says they do."""
    n = len(top["clients"])
    directions = data.draw(st.lists(st.sampled_from(["up", "down"]), min_size=n, max_size=n))
    starts = data.draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n))
    mbits = data.draw(st.lists(st.floats(0.1, 50.0), min_size=n, max_size=n))
    paths, caps = _paths(top, directions)
    expected = reference_finish_times([(s, m * 1e6, p) for s, m, p in zip(starts, mbits, paths)],
                                      {r: c * 1e6 for r, c in caps.items()}.__getitem__)

    env = simpy.Environment()
    cells = {i: CellSpec(up_mbps=c, down_mbps=c) for i, c in enumerate(top["cells"])}
    clients = [(_link(access), (cell % len(cells)) if cells and cell >= 0 else None)
               for access, cell in top["clients"]]
    net = Network(env, clients.__getitem__, cell_routes(cells))
    done = {}

    def go(cid):
        yield env.timeout(starts[cid])
        tr = net.start(cid, mbits[cid] * MBIT, directions[cid])
        yield tr.done
        done[cid] = env.now

    for cid in range(n):
        env.process(go(cid))
    env.run()
    assert done == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert not net.users  # every link is free again


def test_a_lone_flow_finishes_without_rerating_events():
    """On a star nothing is shared: each transfer is one component with one timer."""
    env = simpy.Environment()
    net = Network(env, lambda cid: (_link(10.0 * (cid + 1), latency=0.01), None))
    transfers = [net.start(cid, 10 * MBIT, "up") for cid in range(100)]
    env.run()
    assert [tr.finished_at for tr in transfers] == [0.01 + 1.0 / (cid + 1) for cid in range(100)]
