"""Processor sharing on shared links: finish times against the fluid model worked out by hand."""
import networkx as nx
import pytest
import simpy

from edgefed.simulator.network import SERVER, Network, max_min_rates

MBIT = 1e6 / 8  # bytes in one megabit


def _cell_network(n_clients: int, backhaul_mbps: float, access_mbps: float = 1000.0, latency: float = 0.0):
    """n clients with fast access links behind one access point whose backhaul is the bottleneck."""
    env = simpy.Environment()
    g = nx.Graph()
    g.add_edge(("cell", "ap"), SERVER, up=backhaul_mbps, down=backhaul_mbps, latency=latency, loss=0.0)
    for i in range(n_clients):
        g.add_edge(("client", i), ("cell", "ap"), up=access_mbps, down=access_mbps, latency=0.0, loss=0.0)
    return env, Network(env, g)


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
    net.graph.edges[("cell", "ap"), SERVER]["loss"] = 0.2
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
    rates = max_min_rates([["a", "b"], ["b"], ["b"]], {"a": 2.0, "b": 10.0}.__getitem__)
    assert rates == pytest.approx([2.0, 4.0, 4.0])
