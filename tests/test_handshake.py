"""Connection set-up (issue 28, item 6), against times and energies computed by hand on
tests/test_systems.py's round-number link (promotion 0.5 s at 2 W, 0.1 s latency, 1 W base,
0.1 / 0.5 W per Mbps down / up, a 5 s tail; 1 MB each way, 2 GFLOP at 1 GFLOP/s) opening each new
connection with TCP + TLS 1.3: two round trips of the path's latency before the request's own."""
import pytest

from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.network import CellSpec
from tests.test_systems import LINK, FakeAlgo, device, make_engine, play

NEW_CONNECTIONS = LINK.model_copy(update={"handshake_rtts": 2})


def test_a_transfer_that_wakes_the_radio_opens_a_connection_and_pays_its_round_trips():
    (r1, [a]), (r2, [b]) = play(make_engine(FakeAlgo(), [device(1.0)], link=NEW_CONNECTIONS,
                                            rounds=EngineConfig(max_rounds=2, clients_per_round=1)), 2)
    # download from idle: promotion 0.5 s, then 3 round trips of 0.1 s (TCP, TLS, the request), then
    # 8 Mbit at 16 Mbps: 1.3 s. The upload starts inside the download's tail (no promotion, the
    # connection still open): 0.1 s + 8 Mbit at 8 Mbps = 1.1 s.
    assert a.download_s == pytest.approx(0.5 + 3 * 0.1 + 0.5)
    assert a.upload_s == pytest.approx(1.1)
    assert r1.sim_time_s == pytest.approx(1.3 + 2.0 + 1.1)
    assert (a.bytes_down, a.bytes_up) == (1_000_000, 1_000_000)  # the payload: set-up bytes are not counted
    # radio: promotion 0.5 s x 2 W; 0.8 s at the 1 W base; 0.1 W/Mbps x 8 Mbit; the download's tail runs
    # 2 s until the upload cuts it; the upload 1.1 s at 1 W + 0.5 W/Mbps x 8 Mbit; its 5 s tail at 1 W
    assert a.energy_radio_j == pytest.approx(1.0 + 0.8 + 0.8 + 2.0 + (1.1 + 4.0) + 5.0)
    # round 2 starts inside that tail: the connection is still open, so no promotion and no handshake
    assert b.download_s == pytest.approx(0.1 + 0.5)


def test_one_round_trip_is_the_whole_paths_latency():
    cells = {"ap": CellSpec(up_mbps=100.0, down_mbps=100.0, latency_s=0.05)}
    (_, [row]), = play(make_engine(FakeAlgo(), [device(1.0)], link=NEW_CONNECTIONS, cells=cells, cell="ap"))
    # promotion 0.5 s, 3 round trips of 0.1 + 0.05 s, then 8 Mbit at min(16, 100) Mbps
    assert row.download_s == pytest.approx(0.5 + 3 * 0.15 + 0.5)


def test_a_kept_alive_connection_pays_only_the_request():
    (_, [row]), = play(make_engine(FakeAlgo(), [device(1.0)], link=LINK))  # handshake_rtts 0
    assert row.download_s == pytest.approx(0.5 + 0.1 + 0.5)
