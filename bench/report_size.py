"""The report page's size and the time to write it (edgefed/report.py), for the quickstart, a replay
of a million devices with 1,000 clients per round and a sweep. The replay runs 4 rounds (every
client drawn) and 100 (drawn per device class and round), and 100 rounds of 10,000 clients (a
million rows in clients.csv); the sweep is the committed 45-point one under
bench/results/fedspzo_paper/classes. For the quickstart also what the report adds to `edgefed
run`: its first page in the process that just ran it (plotly's imports included; the run's plots
had imported matplotlib), whether a second page comes out byte for byte the same, and the wall
time of whole `edgefed run` processes with and without the report (interleaved pairs, their
median difference). The quickstart's page, drawn by Debian's chromium (1280 pixels wide, the
whole page), is docs/report.png. Figures in bench/results/report_size.json.

    OMP_NUM_THREADS=1 python bench/report_size.py
"""
from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

from replay_scale import record_trace, replay_scenario  # the replay bench's trace and fleets (bench/ is on sys.path)

from edgefed.provenance import write_bench_result
from edgefed.runner import run_scenario
from edgefed.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path("bench/runs/report-size")  # relative to ROOT, as the pages name them
SWEEP = Path("bench/results/fedspzo_paper/classes")
REPLAYS = [(1_000_000, 1_000, 4), (1_000_000, 1_000, 100), (1_000_000, 10_000, 100)]
PAIRS = 3  # whole quickstart processes with and without the report
SCREENSHOT = ROOT / "docs/report.png"


def page(paths: list[Path], out: Path) -> dict:
    """Write one page; its size, the seconds it took and how its timelines were drawn."""
    from edgefed.report import write_report
    start = time.perf_counter()
    write_report(paths, out)
    seconds = time.perf_counter() - start
    text = out.read_text()
    return {"bytes": out.stat().st_size, "seconds": seconds, "runs": text.count('<details class="run"'),
            "timelines_aggregated": text.count("Aggregated: ")}


def quickstart() -> dict:
    """The quickstart as `edgefed run` plays it (plots on), then its page twice in the same process."""
    scenario, base = load_scenario(ROOT / "scenarios/quickstart.yaml", ["output.report=false"])
    run_dir = RUNS / "quickstart"
    start = time.perf_counter()
    run_scenario(scenario, base, run_dir)
    run_s = time.perf_counter() - start
    first = page([run_dir], run_dir / "report.html")
    text = (run_dir / "report.html").read_bytes()
    again = page([run_dir], run_dir / "report.html")
    return {**first, "run_wall_s": run_s, "again_seconds": again["seconds"],
            "identical_when_written_again": text == (run_dir / "report.html").read_bytes(), **processes()}


def processes() -> dict:
    """`edgefed run scenarios/quickstart.yaml` in fresh processes, without and with the report, in turn."""
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(PAIRS):
        for report in (False, True):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgefed", "run", "scenarios/quickstart.yaml", "--out",
                            str(RUNS / f"process-report-{report}"), "--quiet", "--set", f"output.report={report}"],
                           check=True, stdout=subprocess.DEVNULL)
            walls[report].append(time.perf_counter() - start)
    return {"process_wall_s_without": walls[False], "process_wall_s_with": walls[True],
            "process_added_s_median": statistics.median(b - a for a, b in zip(walls[False], walls[True]))}


def screenshot(html: Path, png: Path) -> None:
    """The whole page as Debian's chromium draws it, once every chart is drawn."""
    from playwright.sync_api import sync_playwright

    from tests.test_report import CHROMIUM, FLAGS
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        view = chromium.new_page(viewport={"width": 1280, "height": 900})
        view.goto(html.resolve().as_uri())
        view.wait_for_function("document.querySelectorAll('div.chart:not(.js-plotly-plot)').length === 0")
        view.screenshot(path=png, full_page=True)
        chromium.close()


def replay(devices: int, per_round: int, rounds: int) -> dict:
    run_dir = RUNS / f"replay-{devices}-{per_round}-{rounds}"
    summary = run_scenario(replay_scenario(devices, per_round, rounds), ROOT, run_dir)
    return {"devices": devices, "per_round": per_round, "rounds": rounds,
            "client_sessions": sum(summary["totals"]["client_rounds"].values()),
            "clients_csv_bytes": (run_dir / "clients.csv").stat().st_size, **page([run_dir], run_dir / "report.html")}


def main() -> None:
    record_trace()
    with contextlib.chdir(ROOT):
        figures = {"quickstart": quickstart()}
        q = figures["quickstart"]
        print(f"quickstart: {q['bytes'] / 1e6:.2f} MB in {q['seconds']:.2f} s after a {q['run_wall_s']:.1f} s run "
              f"(again: {q['again_seconds']:.2f} s, the same bytes: {q['identical_when_written_again']}); whole "
              f"processes: {q['process_added_s_median']:+.2f} s (median of {PAIRS} pairs)", flush=True)
        screenshot(RUNS / "quickstart" / "report.html", SCREENSHOT)
        print(f"screenshot: {SCREENSHOT.relative_to(ROOT)} ({SCREENSHOT.stat().st_size / 1e3:.0f} kB)", flush=True)
        figures["replays"] = [replay(*point) for point in REPLAYS]
        for r in figures["replays"]:
            print(f"replay {r['devices']:,} devices, {r['per_round']:,}/round x {r['rounds']} rounds "
                  f"({r['client_sessions']:,} sessions): {r['bytes'] / 1e6:.2f} MB in {r['seconds']:.2f} s, "
                  f"timeline {'aggregated' if r['timelines_aggregated'] else 'per client'}", flush=True)
        figures["sweep"] = {"folder": str(SWEEP), **page([SWEEP], RUNS / "sweep.html")}
    s = figures["sweep"]
    print(f"sweep {s['folder']} ({s['runs']} runs, {s['timelines_aggregated']} timelines aggregated): "
          f"{s['bytes'] / 1e6:.2f} MB in {s['seconds']:.2f} s", flush=True)
    write_bench_result(ROOT / "bench/results/report_size.json", figures, __file__)


if __name__ == "__main__":
    main()
