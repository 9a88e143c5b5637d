"""No energy cell is negative (issue 28, item 5). A radio tail is charged in full when it starts;
a transfer that starts inside it refunds the part it cut short, in the row of the client that cut
it, and that row ends with a full tail of its own (every transfer, finished or cut off, leaves
one), which is at least the refund. Random fleets over back-to-back rounds - deadlines, failures,
availability windows, battery shares, shared backhauls - under both energy attributions."""
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings

from edgefed.simulator import radio
from tests.test_solo import play, setups

ENERGY = ("energy_compute_j", "energy_radio_j", "energy_idle_j")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setup=setups())
def test_no_energy_cell_is_negative_over_back_to_back_rounds(setup, monkeypatch):
    _, rounds = play(setup, False, monkeypatch)
    for record, rows in rounds:
        assert record["energy_j"] >= 0.0, record
        for row in rows:
            assert all(row[name] >= 0.0 for name in ENERGY), row


def test_a_refund_is_never_more_than_the_tail_it_cuts():
    """0.1 + 0.2 rounds to 0.30000000000000004, so the tail a transfer cuts at once would refund
    0.20000000000000004 s of a 0.2 s tail, and a row with an otherwise free transfer would go
    below zero."""
    link = SimpleNamespace(tail_s=0.2, tail_w=1.0, promotion_s=0.0)
    tail_from, tail_until, tail_j = radio.tail(link, 0.1)
    assert tail_until - tail_from > link.tail_s
    promote, refund = radio.wake(link, tail_until, tail_from)
    assert not promote and refund == tail_j == 0.2
