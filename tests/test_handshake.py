"""Connection set-up (issue 28, item 6; issue 40, item 5), against times and energies computed by
hand on tests/test_systems.py's round-number link (promotion 0.5 s at 2 W, 0.1 s latency, 1 W base,
0.1 / 0.5 W per Mbps down / up, a 5 s tail; 1 MB each way, 2 GFLOP at 1 GFLOP/s) opening each new
connection with TCP + TLS 1.3: two round trips of the path's latency before the request's own. A
connection lives ``keepalive_s`` after its last transfer, whatever the radio does."""
import math

import numpy as np
import pytest

from edgefed.devices.profile import default_catalog
from edgefed.simulator import radio
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


def test_a_link_without_handshakes_pays_only_the_request():
    (_, [row]), = play(make_engine(FakeAlgo(), [device(1.0)], link=LINK))  # handshake_rtts 0
    assert row.download_s == pytest.approx(0.5 + 0.1 + 0.5)


def test_a_link_without_promotion_pays_the_handshake_on_first_contact_only():
    wired = NEW_CONNECTIONS.model_copy(update={"promotion_s": 0.0, "tail_s": 0.0})
    (_, [a]), (_, [b]) = play(make_engine(FakeAlgo(), [device(1.0)], link=wired,
                                          rounds=EngineConfig(max_rounds=2, clients_per_round=1)), 2)
    # first contact: 3 round trips of 0.1 s, then 8 Mbit at 16 Mbps; the upload 2 s later finds the
    # connection alive (7440 s): 0.1 s + 8 Mbit at 8 Mbps; so does round 2's download
    assert a.download_s == pytest.approx(3 * 0.1 + 0.5)
    assert a.upload_s == pytest.approx(0.1 + 1.0)
    assert b.download_s == pytest.approx(0.1 + 0.5)
    # radio: the download 0.8 s at 1 W + 0.1 W/Mbps x 8 Mbit, the upload 1.1 s at 1 W + 0.5 W/Mbps x 8 Mbit
    assert a.energy_radio_j == pytest.approx(0.8 + 0.8 + 1.1 + 4.0)


def test_a_connection_idle_past_keepalive_is_opened_again_inside_the_radio_tail():
    short = NEW_CONNECTIONS.model_copy(update={"keepalive_s": 1.5})
    (r1, [a]), = play(make_engine(FakeAlgo(), [device(1.0)], link=short))
    # the upload starts 2 s after the download ended: the radio's tail (5 s) still runs, so no
    # promotion, but the connection died at 1.5 s: 3 round trips, then 8 Mbit at 8 Mbps
    assert a.download_s == pytest.approx(0.5 + 0.3 + 0.5)
    assert a.upload_s == pytest.approx(0.3 + 1.0)
    assert r1.sim_time_s == pytest.approx(1.3 + 2.0 + 1.3)
    # radio: promotion 1 J; download 0.8 s base + 0.8 J; its tail runs 2 s (2 J) until the upload
    # cuts it; the upload 1.3 s base + 4 J; its 5 s tail at 1 W
    assert a.energy_radio_j == pytest.approx(1.0 + 0.8 + 0.8 + 2.0 + (1.3 + 4.0) + 5.0)


def test_a_radio_promoted_again_keeps_a_live_connection():
    short_tail = NEW_CONNECTIONS.model_copy(update={"tail_s": 1.0})
    (r1, [a]), = play(make_engine(FakeAlgo(), [device(1.0)], link=short_tail))
    # the upload 2 s after the download: its 1 s tail is over, so it pays the promotion (0.5 s),
    # but its connection lives (7440 s): no handshake, the request's round trip and 8 Mbit at 8 Mbps
    assert a.upload_s == pytest.approx(0.5 + 0.1 + 1.0)
    # radio: promotion 1 J, download 0.8 s + 0.8 J, its whole 1 s tail 1 J; promotion 1 J, upload
    # 0.1 + 1.0 s base + 4 J, its 1 s tail
    assert a.energy_radio_j == pytest.approx(1.0 + 0.8 + 0.8 + 1.0 + 1.0 + 1.1 + 4.0 + 1.0)


def test_5g_sa_resuming_from_inactive_keeps_its_connection():
    sa = default_catalog().links["5g-sa"]
    # 60 s after its last transfer the radio has long parked in RRC_INACTIVE (10.15 s tail): the
    # resume is a promotion, the connection (240 s) is still there; after 300 s it is gone
    assert radio.wake(sa, 10.15, 60.0)[0]
    assert radio.handshakes(sa, 0.0, 60.0) == 0
    assert radio.handshakes(sa, 0.0, 300.0) == sa.handshake_rtts == 2
    assert radio.handshakes(sa, math.nan, 0.0) == 2  # first contact


def test_the_rule_takes_arrays_as_the_closed_form_does():
    contact = np.array([np.nan, 0.0, 0.0, 0.0])
    now = np.array([0.0, 1.0, 1.5, 1.6])
    short = NEW_CONNECTIONS.model_copy(update={"keepalive_s": 1.5})
    assert radio.handshakes(short, contact, now).tolist() == [2, 0, 0, 2]
