"""Cut clients (issue 40, item 1), against times and energies computed by hand.

The link is tests/test_systems.py's round-number one with a 1 s tail and new connections
(promotion 0.5 s at 2 W, 0.1 s latency, 1 W base, 0.1 / 0.5 W per Mbps down / up, 2 handshake
round trips on first contact); devices draw 3 W computing and 0.5 W otherwise; 1 MB each way and
8 GFLOP of work. Every client's download starts from an idle radio: 0.5 s promotion, 3 round
trips (TCP, TLS, the request), 8 Mbit at 16 Mbps - 1.3 s, 2.6 J of radio (1 J promotion, 0.8 s at
1 W, 0.8 J for the bits), then a 1 s tail (1 J).
"""

import pytest

from edgefed.scenario import RoundsSpec
from edgefed.simulator.inputs import EngineConfig
from tests.test_systems import LINK, FakeAlgo, device, make_engine, play, restore

CUT_LINK = LINK.model_copy(update={"tail_s": 1.0, "handshake_rtts": 2})
DOWNLOAD_J = 1.0 + 0.8 + 0.8


def overselected(cut: str, max_rounds: int = 1):
    """A 4 GFLOP/s device and a 1 GFLOP/s one, of which the server keeps the first arrival. The fast
    one computes 2 s (1.3 -> 3.3 s); its download's tail ended at 2.3 s, so its upload pays a
    promotion (no handshake: its connection lives 7440 s): 0.5 + 0.1 + 8 Mbit at 8 Mbps = 1.6 s, in
    at 4.9 s, where the quota closes the round. The slow one computes 1.3 -> 9.3 s."""
    rounds = EngineConfig(max_rounds=max_rounds, clients_per_round=1, selection="overselect", overselect=2.0,
                          cut=cut)
    return make_engine(FakeAlgo(flops=8e9), [device(4.0), device(1.0)], link=CUT_LINK, rounds=rounds)


def test_finish_a_client_cut_by_the_quota_computes_on_and_is_refused_at_its_first_contact():
    (record, [fast, slow]), = play(overselected("finish"))
    assert record.sim_time_s == pytest.approx(4.9) and record.aggregated == 1  # the round closes at the quota
    assert (fast.status, slow.status) == ("ok", "cut")
    assert "refused" in slow.note
    # it computes all 8 s; at 9.3 s its radio is idle (tail over at 2.3 s): a promotion, then the
    # request's round trip on the live connection (8 s < 7440 s), no payload: 0.6 s, done at 9.9 s
    assert (slow.download_s, slow.compute_s, slow.upload_s) == pytest.approx((1.3, 8.0, 0.6))
    assert (slow.flops, slow.bytes_up, slow.bytes_down) == (8e9, 0, 1_000_000)
    assert slow.finished_at == pytest.approx(9.9)
    assert slow.energy_compute_j == pytest.approx(8.0 * 3.0)
    # radio: download and its tail, the contact's promotion (1 J) and 0.1 s at 1 W, its 1 s tail
    assert slow.energy_radio_j == pytest.approx(DOWNLOAD_J + 1.0 + (1.0 + 0.1) + 1.0)
    assert slow.energy_idle_j == pytest.approx(0.5 * (1.3 + 0.6))  # the baseline while not computing
    assert slow.energy_j == pytest.approx(30.65)
    assert record.energy_j == pytest.approx(fast.energy_j + 30.65)  # charged to the round it was selected in


def test_push_stops_a_client_cut_by_the_quota_at_the_close_with_a_promotion_and_a_tail():
    (record, [fast, slow]), = play(overselected("push"))
    assert record.sim_time_s == pytest.approx(4.9)
    assert (fast.status, slow.status) == ("ok", "cut") and "push" in slow.note
    # stopped at 4.9 s after 3.6 s of its computation; the push finds the radio idle: a promotion
    # (1 J) and a tail (1 J) from the close
    assert (slow.compute_s, slow.flops, slow.upload_s) == pytest.approx((3.6, 3.6e9, 0.0))
    assert slow.energy_compute_j == pytest.approx(3.6 * 3.0)
    assert slow.energy_radio_j == pytest.approx(DOWNLOAD_J + 1.0 + 1.0 + 1.0)
    assert slow.energy_idle_j == pytest.approx(0.5 * 1.3)
    assert slow.energy_j == pytest.approx(17.05)
    assert slow.finished_at == pytest.approx(4.9)


def test_the_fast_clients_row_does_not_depend_on_the_cut_mode():
    (_, [finish, _]), = play(overselected("finish"))
    (_, [push, _]), = play(overselected("push"))
    assert finish == push
    assert (finish.download_s, finish.compute_s, finish.upload_s) == pytest.approx((1.3, 2.0, 1.6))


def test_finish_keeps_a_cut_device_busy_until_its_refused_contact_ends():
    """Round 2 starts at 4.9 s and round 3 at 9.1 s (the fast device alone: its download inside its
    upload's tail, 0.6 s, 2 s of compute, an upload after a promotion, 1.6 s: 4.2 s a round), both
    before the slow device's contact ends at 9.9 s; round 4 (13.3 s) may take it again. Under push
    it is free at once."""
    finish = play(overselected("finish", 4), 4)
    assert [[r.client for r in rows] for _, rows in finish] == [[0, 1], [0], [0], [0, 1]]
    assert [record.sim_time_s for record, _ in finish] == pytest.approx([4.9, 9.1, 13.3, 17.5])
    push = play(overselected("push", 2), 2)
    assert [[r.client for r in rows] for _, rows in push] == [[0, 1], [0, 1]]


def late_alone(cut: str, max_rounds: int = 1, keepalive_s: float = 5.0):
    """One 1 GFLOP/s device under a 4 s deadline, on a link whose connections live ``keepalive_s``."""
    link = CUT_LINK.model_copy(update={"keepalive_s": keepalive_s})
    rounds = EngineConfig(max_rounds=max_rounds, clients_per_round=1, deadline_s=4.0, cut=cut)
    return make_engine(FakeAlgo(flops=8e9), [device(1.0)], link=link, rounds=rounds)


def test_finish_a_client_past_the_deadline_is_late_and_its_refused_contact_pays_the_handshake():
    (record, [row]), = play(late_alone("finish"))
    assert record.sim_time_s == pytest.approx(4.0) and record.aggregated == 0
    assert row.status == "late"
    # at 9.3 s: the radio idle (a promotion) and the connection dead (8 s > 5 s): 0.5 s, then
    # 3 round trips of 0.1 s, no payload: 0.8 s, done at 10.1 s
    assert (row.compute_s, row.upload_s, row.bytes_up) == pytest.approx((8.0, 0.8, 0))
    assert row.energy_radio_j == pytest.approx(DOWNLOAD_J + 1.0 + (1.0 + 0.3) + 1.0)
    assert row.energy_j == pytest.approx(24.0 + 5.9 + 0.5 * (1.3 + 0.8))


def test_the_next_round_waits_for_a_device_that_is_busy_and_finds_its_connection_open():
    """The only device is busy until 10.1 s, so round 2 starts then: its download inside the
    contact's tail on the connection the contact opened (0.1 + 0.5 s), and it is late again at 14.1 s."""
    (_, _), (record, [row]) = play(late_alone("finish", 2), 2)
    assert row.download_s == pytest.approx(0.6)
    assert record.sim_time_s == pytest.approx(10.1 + 4.0)


def test_a_busy_device_survives_a_state_round_trip():
    straight = play(late_alone("finish", 2), 2)
    first = late_alone("finish", 2)
    play(first, 1)
    resumed = late_alone("finish", 2)
    restore(resumed, first)
    assert resumed.sessions.busy_until.tolist() == pytest.approx([10.1])
    (record, rows), = play(resumed, 2, first=2)
    assert rows == straight[1][1]
    assert (record.sim_time_s, record.energy_j) == (straight[1][0].sim_time_s, straight[1][0].energy_j)


def test_a_cut_client_in_touch_with_the_server_stops_at_once_in_either_mode():
    """Cut mid-upload (a 1 MB upload at 8 Mbps from 9.3 s, a 9.5 s deadline): it is talking to the
    server, which closes on it, so both modes charge the 0.2 s it got through of the upload."""
    rows = []
    for cut in ("finish", "push"):
        rounds = EngineConfig(max_rounds=1, clients_per_round=1, deadline_s=9.5, cut=cut)
        (_, [row]), = play(make_engine(FakeAlgo(flops=8e9), [device(1.0)], link=CUT_LINK, rounds=rounds))
        rows.append(row)
    assert rows[0] == rows[1]
    assert rows[0].status == "late" and rows[0].upload_s == pytest.approx(0.2) and rows[0].note == ""


def test_finish_a_cut_client_whose_battery_share_runs_out_computing_on_drops_as_uncut():
    """A 19.25 J share: 4.25 J spent by the download (2.6 J radio, its 1 J tail, 0.65 J baseline),
    then 5 s at 3 W until it is empty, at 6.3 s, past the 4 s deadline: as without a deadline."""
    rows = []
    for deadline_s in (4.0, None):
        rounds = EngineConfig(max_rounds=1, clients_per_round=1, deadline_s=deadline_s, cut="finish")
        (_, [row]), = play(make_engine(FakeAlgo(flops=8e9), [device(1.0, battery_wh=19.25 / 3600 / 0.5)],
                                       link=CUT_LINK, rounds=rounds, battery_fraction=0.5))
        rows.append(row)
    assert rows[0] == rows[1]
    assert (rows[0].status, rows[0].note) == ("dropped", "battery empty")
    assert (rows[0].compute_s, rows[0].energy_compute_j) == pytest.approx((5.0, 15.0))


def test_cut_is_a_synchronous_rule():
    with pytest.raises(ValueError, match="rounds.cut"):
        RoundsSpec.model_validate({"mode": "async", "cut": "push"})
    assert RoundsSpec.model_validate({"cut": "push"}).cut == "push"
    assert RoundsSpec().cut == "finish"
    assert "cut" not in RoundsSpec.model_validate({"mode": "async"}).model_dump()  # its dump loads again
