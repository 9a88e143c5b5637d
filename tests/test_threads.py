"""Same scenario and seed in fresh processes with 1 and 2 torch threads: identical files.

Only ``host_seconds`` (wall-clock on the host) may differ. The systems figures never depend on
host floating point (FLOPs come from shapes, bytes from message sizes); the learning figures are
identical because the tiny model's tensors are below ATen's parallel grain, so no ATen reduction
changes order with the thread count, and MKL's matrix multiplies run in its strict reproducible
mode (``MKL_CBWR=AUTO,STRICT``: the same bits for any thread count). Without it MKL may split a
multiply across threads differently on another CPU: with ``MKL_CBWR=AVX2`` (the code path of a CPU
without AVX-512) the two runs below differ in the last bits of a loss. bench/thread_determinism.py
checks MiniLM.
"""
import json
import os
import subprocess
import sys

from tests.test_end_to_end import read_csv


def run_with_threads(scenario, out, threads):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MKL_CBWR": "AUTO,STRICT"}
    result = subprocess.run([sys.executable, "-m", "edgefed", "run", str(scenario), "--out", str(out),
                             "--quiet", "--set", "rounds.max=2", "--set", "host.threads=null"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rounds = [{k: v for k, v in r.items() if k != "host_seconds"} for r in read_csv(out / "rounds.csv")]
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("host_seconds")
    return rounds, (out / "clients.csv").read_text(), summary


def test_one_and_two_threads_give_identical_outputs(tiny_file, tmp_path):
    one = run_with_threads(tiny_file, tmp_path / "t1", 1)
    two = run_with_threads(tiny_file, tmp_path / "t2", 2)
    assert one == two
    assert len({r["accuracy"] for r in one[0]}) > 1, "the model must learn something to compare"
