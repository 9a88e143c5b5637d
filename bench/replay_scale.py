"""Replay mode at scale: fleets of 1k to 1M devices, 100 to 10,000 selected per round, driven by
the trace of a real 100-round tiny-bert run (recorded once, kept under bench/runs). Each point runs
in a fresh process and reports its wall time and memory: the peak RSS during the replay (Linux
VmHWM, reset just before) and its growth over the RSS after imports, also per device. Figures go
to bench/results/replay_scale.json under a label (``after`` by default; ``before`` for a run of an
older checkout), so one table holds both, with CPU seconds besides wall time (the machine is
shared: load inflates wall time more). ``--profile`` prints the top entries of one point instead;
``--resume`` kills (SIGKILL) a replay after a round, resumes it and checks that rounds.csv,
clients.csv and summary.json equal an uninterrupted run's (host seconds excepted), under
``resume`` in the same file.

    OMP_NUM_THREADS=1 python bench/replay_scale.py                    # the default table
    OMP_NUM_THREADS=1 python bench/replay_scale.py 1000000:1000:100   # devices:per round:rounds
    OMP_NUM_THREADS=1 python bench/replay_scale.py --profile 1000000:1000:100
    OMP_NUM_THREADS=1 python bench/replay_scale.py --resume 1000000:1000:100
    OMP_NUM_THREADS=1 python bench/replay_scale.py --topology --label three-tier 1000000:1000:100

``--topology`` attaches the fleet's groups to the access points and cells of
scenarios/fleets/three-tier.yaml's graph (flat rounds: a replay cannot drive hierarchical
aggregation), so every transfer crosses and shares its path's links; without it, the star.
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgefed.provenance import bench_provenance, write_bench_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.conftest

RUNS = ROOT / "bench/runs/replay-scale"
RESULTS = ROOT / "bench/results/replay_scale.json"
TRACE_ROUNDS = 100
POINTS = ["1000:100:100", "1000:1000:100", "10000:100:100", "10000:1000:100", "100000:100:100", "100000:1000:100",
          "1000000:100:100", "1000000:1000:100", "1000000:10000:100"]
KILL_AFTER = 0.6  # --resume: the share of the rounds after which the replay is killed
THREE_TIER = ROOT / "scenarios/fleets/three-tier.yaml"
MIX = [("pixel-7a", 0.4, "lte"), ("rpi5", 0.3, "wifi"), ("galaxy-s24", 0.2, "5g"), ("jetson-orin-nano", 0.1, "ethernet")]


def base_scenario() -> dict:
    from tests.conftest import TINY
    data = copy.deepcopy(TINY)
    data["name"] = "replay-trace"
    data["rounds"].update(max=TRACE_ROUNDS, clients_per_round=4, eval_every=10, target_accuracy=0.6)
    return data


def record_trace() -> Path:
    """A real 100-round run of the tiny model; its trace drives every replay."""
    from edgefed.replay import TRACE
    from edgefed.runner import run_scenario
    from edgefed.scenario import Scenario
    trace = RUNS / "real" / TRACE
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


def parse_point(text: str) -> tuple[int, int, int]:
    devices, per_round, rounds = (int(x) for x in text.split(":"))
    return devices, per_round, rounds


def replay_scenario(devices: int, per_round: int, rounds: int, topology: bool = False):
    from edgefed.replay import TRACE
    from edgefed.scenario import Scenario, load_yaml
    data = base_scenario()
    data["name"] = f"replay-{devices}-{per_round}" + ("-three-tier" if topology else "")
    data["replay"] = {"trace": str(RUNS / "real" / TRACE)}
    data["fleet"]["groups"] = [{"device": d, "count": int(devices * share), "link": link} for d, share, link in MIX]
    if topology:
        graph = load_yaml(THREE_TIER.read_text())["fleet"]["network"]["topology"]
        leaves = [name for name, node in graph["nodes"].items() if node["kind"] in ("ap", "cell")]
        data["fleet"]["network"] = {"topology": graph}
        for i, group in enumerate(data["fleet"]["groups"]):
            group["attach"] = leaves[i % len(leaves)]
    data["rounds"].update(clients_per_round=per_round, max=rounds)
    return Scenario.model_validate(data)


def replay_one(devices: int, per_round: int, rounds: int, topology: bool = False) -> dict:
    """In this process: replay one point; wall time and memory."""
    from edgefed.runner import run_scenario
    scenario = replay_scenario(devices, per_round, rounds, topology)
    run_dir = RUNS / scenario.name
    base_rss = proc_status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    summary = run_scenario(scenario, ROOT, run_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_rss = proc_status("VmHWM")
    return {"devices": devices, "selected_per_round": per_round, "rounds": rounds,
            "network": "three-tier" if topology else "star", "wall_s": wall, "cpu_s": cpu,
            "load_average_1min": [load_start, os.getloadavg()[0]],
            "peak_rss_bytes": peak_rss, "rss_growth_bytes": peak_rss - base_rss,
            "bytes_per_device": (peak_rss - base_rss) / devices,
            "client_rounds": summary["totals"]["client_rounds"], "sim_time_s": summary["totals"]["sim_time_s"],
            "time_to_target_s": summary["time_to_target_s"],
            "clients_csv_bytes": (run_dir / "clients.csv").stat().st_size}


def replay_until_killed(devices: int, per_round: int, rounds: int) -> None:
    """In this process: replay one point into its ``-killed`` folder (``resume_check`` kills it)."""
    from edgefed.runner import run_scenario
    run_scenario(replay_scenario(devices, per_round, rounds), ROOT, RUNS / f"replay-{devices}-{per_round}-killed")


def run_files(run_dir: Path) -> tuple:
    """rounds.csv without host_seconds, clients.csv, summary.json without host_seconds."""
    lines = (run_dir / "rounds.csv").read_text().splitlines()
    col = lines[0].split(",").index("host_seconds")
    rounds = [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("host_seconds")
    return rounds, (run_dir / "clients.csv").read_bytes(), summary


def resume_check(devices: int, per_round: int, rounds: int) -> dict:
    """Replay a point uninterrupted; replay it again in a child process killed with SIGKILL once
    rounds.csv holds ``KILL_AFTER`` of the rounds; resume that run here; compare the files."""
    from edgefed.checkpoint import load_checkpoint
    from edgefed.runner import run_scenario
    scenario = replay_scenario(devices, per_round, rounds)
    straight, killed = RUNS / f"replay-{devices}-{per_round}", RUNS / f"replay-{devices}-{per_round}-killed"
    start = time.perf_counter()
    run_scenario(scenario, ROOT, straight)
    straight_s = time.perf_counter() - start
    shutil.rmtree(killed, ignore_errors=True)  # an earlier check's complete rounds.csv would trigger the kill at once
    child = subprocess.Popen([sys.executable, __file__, "--until-killed", f"{devices}:{per_round}:{rounds}"])
    kill_at = int(rounds * KILL_AFTER)
    while child.poll() is None:
        csv = killed / "rounds.csv"
        if csv.exists() and csv.read_bytes().count(b"\n") >= kill_at + 2:  # header, round 0, rounds 1..kill_at
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    child.wait()
    resumed_from = load_checkpoint(killed).state["engine"]["round"]
    start = time.perf_counter()
    run_scenario(scenario, ROOT, killed, resume=True)
    resumed_s = time.perf_counter() - start
    same = [name for name, a, b in zip(("rounds.csv", "clients.csv", "summary.json"), run_files(straight),
                                       run_files(killed)) if a == b]
    return {"devices": devices, "selected_per_round": per_round, "rounds": rounds, "killed_with": "SIGKILL",
            "killed_after_round": kill_at, "resumed_from_round": resumed_from, "uninterrupted_wall_s": straight_s,
            "resumed_wall_s": resumed_s, "identical": same,
            "equal": same == ["rounds.csv", "clients.csv", "summary.json"]}


def profile_one(devices: int, per_round: int, rounds: int, top: int = 15) -> str:
    from edgefed.runner import run_scenario
    scenario = replay_scenario(devices, per_round, rounds)
    profiler = cProfile.Profile()
    profiler.runcall(run_scenario, scenario, ROOT, RUNS / f"replay-{devices}-{per_round}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", nargs="*", default=POINTS, help="devices:per_round:rounds")
    parser.add_argument("--label", default="after", help="key of this table in the results file")
    parser.add_argument("--profile", metavar="POINT", help="profile one point; print the top entries")
    parser.add_argument("--resume", metavar="POINT", help="kill a replay mid-run, resume it, compare")
    parser.add_argument("--topology", action="store_true", help="on three-tier.yaml's graph (flat rounds)")
    parser.add_argument("--one", metavar="POINT", help=argparse.SUPPRESS)  # a point in this process
    parser.add_argument("--until-killed", metavar="POINT", help=argparse.SUPPRESS)  # --resume's child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(replay_one(*parse_point(args.one), args.topology)))
        return
    if args.until_killed:
        replay_until_killed(*parse_point(args.until_killed))
        return
    start = time.perf_counter()
    record_trace()
    trace_s = time.perf_counter() - start
    if args.profile:
        print(profile_one(*parse_point(args.profile)))
        return
    figures = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    figures = figures if "tables" in figures else {"tables": {}}
    if args.resume:
        check = resume_check(*parse_point(args.resume))
        print(f"killed after round {check['killed_after_round']}, resumed from {check['resumed_from_round']}: "
              f"identical {', '.join(check['identical']) or 'nothing'}", flush=True)
        figures["resume"] = {"provenance": bench_provenance(__file__), **check}
        write_bench_result(RESULTS, figures, __file__)
        return
    rows = []
    for point in args.points:
        done = subprocess.run([sys.executable, __file__, "--one", point, *(["--topology"] if args.topology else [])],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['devices']:>9,} devices, {row['selected_per_round']:>6,}/round x {row['rounds']:>3} rounds: "
              f"{row['wall_s']:8.1f} s wall, {row['cpu_s']:6.1f} s CPU (load {row['load_average_1min'][1]:.1f}), peak RSS {row['peak_rss_bytes'] / 2**20:6.0f} MiB "
              f"(+{row['rss_growth_bytes'] / 2**20:.1f} MiB, {row['bytes_per_device']:.0f} B/device)", flush=True)
    figures["tables"][args.label] = {"provenance": bench_provenance(__file__), "trace_run_wall_s": trace_s,
                                     "replays": rows}
    figures.pop("provenance", None)  # the newest table's block is the file's (what bench/stale.py reads)
    write_bench_result(RESULTS, figures, __file__)


if __name__ == "__main__":
    main()
