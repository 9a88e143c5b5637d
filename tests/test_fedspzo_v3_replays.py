"""The v3 replays read every pick at the budget itself: the round that crosses it counts pro rata."""
import pytest

from tests.conftest import bench_script

HEADER = "round,sim_time_s,accuracy,loss,selected,aggregated,dropped,bytes_up,bytes_down,energy_j,client_flops,host_seconds"


def rounds_csv(tmp_path, rows):
    (tmp_path / "rounds.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return tmp_path


def test_the_crossing_round_counts_for_its_part_within_the_budget(tmp_path):
    """Rounds of 10, 10 and 20 FLOPs; a budget of 30 is reached halfway through round 3, so round
    3's 4 s (clock 6 -> 10), 8 J and 100 bytes count half: 8 s, 3 + 5 + 4 = 12 J, 200 + 50 bytes."""
    run = rounds_csv(tmp_path, ["0,0.0,0.5,0.7,0,0,0,0,0,0.0,0.0,0.0",
                                "1,2.0,,,4,4,0,40,60,3.0,10.0,0.0",
                                "2,6.0,,,4,4,0,40,60,5.0,10.0,0.0",
                                "3,10.0,0.6,0.6,4,4,0,40,60,8.0,20.0,0.0"])
    at = bench_script("fedspzo_v3_replays").at_budget(run, "client_flops", 30.0)
    assert at == {"sim_time_s": 8.0, "energy_j": 12.0, "bytes": 250.0}  # exact: halves and sums of small integers


def test_a_run_that_ends_before_the_budget_is_refused(tmp_path):
    run = rounds_csv(tmp_path, ["0,0.0,0.5,0.7,0,0,0,0,0,0.0,0.0,0.0", "1,2.0,0.6,0.6,4,4,0,40,60,3.0,10.0,0.0"])
    with pytest.raises(SystemExit, match="before the budget"):
        bench_script("fedspzo_v3_replays").at_budget(run, "client_flops", 30.0)
