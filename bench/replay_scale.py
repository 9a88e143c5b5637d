"""Replay mode at scale: 100 rounds on fleets of 1k, 10k and 100k devices (10% selected per
round), driven by the trace of a real 100-round tiny-bert run (recorded once, kept under
bench/runs). Prints wall time and peak memory per fleet size, each in a fresh process: the peak
RSS during the replay (Linux VmHWM, reset just before) and its growth over the RSS after imports.
Figures in bench/results/replay_scale.json.

    OMP_NUM_THREADS=1 python bench/replay_scale.py
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

from edgefed.simulator.provenance import write_bench_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "bench/runs/replay-scale"
SIZES = [1_000, 10_000, 100_000]
ROUNDS = 100
MIX = [("pixel-7a", 0.4, "lte"), ("rpi5", 0.3, "wifi"), ("galaxy-s24", 0.2, "5g"), ("jetson-orin-nano", 0.1, "ethernet")]


def base_scenario() -> dict:
    from tests.conftest import TINY
    data = copy.deepcopy(TINY)
    data["name"] = "replay-trace"
    data["rounds"].update(max=ROUNDS, clients_per_round=4, eval_every=10, target_accuracy=0.6)
    return data


def record_trace() -> Path:
    """A real 100-round run of the tiny model; its trace.json drives every replay."""
    from edgefed.simulator.runner import run_scenario
    from edgefed.simulator.scenario import Scenario
    trace = RUNS / "real" / "trace.json"
    summary = RUNS / "real" / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text())["status"] == "done"):
        run_scenario(Scenario.model_validate(base_scenario()), ROOT, RUNS / "real")
    return trace


def proc_status(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def replay_one(devices: int) -> dict:
    """In this process: replay ``devices`` devices; wall time and memory."""
    from edgefed.simulator.runner import run_scenario
    from edgefed.simulator.scenario import Scenario
    data = base_scenario()
    data["name"] = f"replay-{devices}"
    data["replay"] = {"trace": str(RUNS / "real" / "trace.json")}
    data["fleet"]["groups"] = [{"device": d, "count": int(devices * share), "link": link} for d, share, link in MIX]
    data["rounds"]["clients_per_round"] = devices // 10
    scenario = Scenario.model_validate(data)
    base_rss = proc_status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    summary = run_scenario(scenario, ROOT, RUNS / f"replay-{devices}")
    wall = time.perf_counter() - start
    peak_rss = proc_status("VmHWM")
    return {"devices": devices, "selected_per_round": devices // 10, "rounds": ROUNDS, "wall_s": wall,
            "peak_rss_bytes": peak_rss, "rss_growth_bytes": peak_rss - base_rss,
            "client_rounds": summary["totals"]["client_rounds"], "sim_time_s": summary["totals"]["sim_time_s"],
            "time_to_target_s": summary["time_to_target_s"],
            "clients_csv_bytes": (RUNS / f"replay-{devices}" / "clients.csv").stat().st_size}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(replay_one(int(sys.argv[2]))))
        return
    start = time.perf_counter()
    record_trace()
    figures = {"trace_run_wall_s": time.perf_counter() - start, "replays": []}
    for devices in SIZES:
        done = subprocess.run([sys.executable, __file__, "--one", str(devices)], capture_output=True, text=True,
                              check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        figures["replays"].append(row)
        print(f"{devices:>7,} devices, {row['selected_per_round']:>6,}/round x {ROUNDS} rounds: "
              f"{row['wall_s']:7.1f} s wall, peak RSS {row['peak_rss_bytes'] / 2**20:7.0f} MiB "
              f"(+{row['rss_growth_bytes'] / 2**20:.1f} MiB over the RSS after imports)", flush=True)
    write_bench_result(ROOT / "bench/results/replay_scale.json", figures, __file__)


if __name__ == "__main__":
    main()
