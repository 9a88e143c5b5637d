"""edgefed report: one self-contained page of runs and sweeps, drawn in a real browser (Debian's
chromium through Playwright: no console error, every chart drew its data, no request but the page
itself), the same bytes from the same folders, and one line with exit code 2 for what it cannot read."""
import copy
import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgefed
import edgefed.report as report
from edgefed.results import csv_text
from edgefed.sweep import Point, sweep_rows
from tests.conftest import REPO, TINY, write_scenario
from tests.helpers import edgefed as cli

# one worker builds the tiny run for every test here, and the browser runs alone (pytest-xdist, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("report")

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-gpu"]
ARTIFACTS = REPO / "test-artifacts"  # git-ignored: the browser test's screenshots
# Every drawn chart's parts whose boxes must not meet: its title and Plotly's mode bar (shown on
# hover, always laid out), its legend and the axis titles, tick labels and plot area; one line a clash.
OVERLAPS = """() => {
  const parts = {title: '.gtitle', modebar: '.modebar', legend: '.legend .bg', xtitle: '.xtitle', ytitle: '.ytitle',
                 xticks: '.xaxislayer-above .xtick text', plot: '.nsewdrag'};
  const pairs = [['title', 'modebar'], ['title', 'plot'], ['title', 'legend'], ['legend', 'modebar'], ['legend', 'xtitle'],
                 ['legend', 'xticks'], ['legend', 'ytitle'], ['legend', 'plot'], ['xtitle', 'xticks']];
  const meet = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const clashes = [];
  for (const div of document.querySelectorAll('.js-plotly-plot')) {
    const box = {};
    for (const [name, selector] of Object.entries(parts))
      box[name] = [...div.querySelectorAll(selector)].map(e => e.getBoundingClientRect()).filter(r => r.width && r.height);
    for (const [p, q] of pairs)
      if (box[p].some(a => box[q].some(b => meet(a, b)))) clashes.push(`${div.id}: ${p} meets ${q}`);
  }
  return clashes;
}"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run written by `edgefed run` with its report: late clients (a 0.3 s deadline) and
    two devices excluded for memory."""
    data = copy.deepcopy(TINY)
    data["fleet"]["devices"] = {"watch": {
        "device_class": "phone", "flops": {"fp32": 1e9}, "mem_bandwidth": 1e9, "memory_bytes": 1e6,
        "power_active_w": 1.0, "power_idle_w": 0.1, "default_link": "wifi"}}
    data["fleet"]["groups"].append({"device": "watch", "count": 2})
    data["rounds"]["deadline_s"] = 0.3
    data["output"]["report"] = True
    folder = tmp_path_factory.mktemp("report")
    result = cli("run", write_scenario(folder, data), "--out", folder / "tiny", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"report: {folder / 'tiny' / 'report.html'}" in result.stdout
    return folder / "tiny"


def copy_run(run_dir: Path, to: Path) -> Path:
    return Path(shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("report.html")))


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def sweep_dir(run_dir, tmp_path_factory) -> Path:
    """A sweep folder as `edgefed sweep` leaves it: two seeds of one learning rate and one of
    another (copies of the tiny run), and a point that failed."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    points = [Point(id=f"p00{i}-{i}", overrides=labels, labels=labels) for i, labels in
              enumerate([{"algorithm.lr": 0.001, "seed": 3}, {"algorithm.lr": 0.001, "seed": 4},
                         {"algorithm.lr": 0.002, "seed": 3}, {"algorithm.lr": 0.002, "seed": 4}])]
    for point in points[:3]:
        copy_run(run_dir, out / point.id)
    columns, table = sweep_rows(out, points, {points[3].id: {"exit_code": 1, "reason": "worker process died"}})
    (out / "sweep.csv").write_text(csv_text(columns, table))
    return out


def test_a_run_writes_its_report_and_load_finds_it(run_dir, tmp_path):
    page = run_dir / "report.html"
    assert edgefed.load(run_dir).report == page
    text = page.read_text()
    assert len(text.encode()) < 5e6, "plotly.js and a tiny run's data fit in 5 MB"
    assert "<link" not in text and 'src="http' not in text, "every script and style is inline"
    again = cli("report", run_dir, "--out", tmp_path / "again.html")
    assert again.returncode == 0 and again.stdout.strip() == f"report: {tmp_path / 'again.html'}"
    assert (tmp_path / "again.html").read_bytes() == page.read_bytes(), "same run, same bytes"


def test_the_default_output_is_the_folders_own_report(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    result = cli("report", run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {run / 'report.html'}" and (run / "report.html").is_file()


def test_a_timeline_over_its_share_of_bars_is_drawn_per_device_class_and_round(run_dir, monkeypatch):
    run = report.read_run(run_dir, "tiny")
    busy = [r for r in rows(run_dir / "clients.csv")
            if sum(float(r[f"{p}_s"]) for p in report.PHASES) > 0]
    bars = sum(float(r[f"{p}_s"]) > 0 for r in busy for p in report.PHASES)
    fig, note = report.timeline(run, bars)
    assert sum(len(trace.x) for trace in fig.data) == bars and note.startswith("Every client's")
    fig, note = report.timeline(run, bars - 1)
    groups = {(r["device"], r["round"]) for r in busy}  # every client that took part downloaded
    download = next(trace for trace in fig.data if trace.name == "download")
    assert note.startswith(f"Aggregated: {bars:,} bars") and len(download.x) == len(groups)
    assert download.customdata[:, 0].sum() == len(busy), "each bar counts its class's clients in that round"
    monkeypatch.setattr(report, "MAX_BARS", bars - 1)
    assert "Aggregated: " in report.report_html([run_dir])


def test_sessions_start_at_the_round_before_after_earlier_edge_rounds_or_at_their_own_start(run_dir):
    run = report.read_run(run_dir, "tiny")
    ends = {int(r["round"]): float(r["sim_time_s"]) for r in rows(run_dir / "rounds.csv")}
    starts = report.session_starts(run)
    assert list(starts) == [ends[max(int(r) - 1, 0)] for r in run.clients["round"]]
    # two edge rounds of clients 1 and 2 in round 1: the second begins where the client's first ended
    edge = {"round": np.array([1.0, 1, 1, 1]), "client": np.array([1.0, 2, 1, 2]),
            "edge_round": np.array([1.0, 1, 2, 2]), **{f"{p}_s": np.array([1.0, 2, 1, 1]) for p in report.PHASES}}
    run.clients, run.rounds = edge, {"round": np.array([0.0, 1]), "sim_time_s": np.array([5.0, 20])}
    assert list(report.session_starts(run)) == [5.0, 5.0, 9.0, 13.0]
    run.clients = {**edge, "start_s": np.array([0.5, 1.5, 2.5, 3.5])}  # asynchronous sessions
    assert list(report.session_starts(run)) == [0.5, 1.5, 2.5, 3.5]


def break_summary(run: Path) -> Path:
    (run / "summary.json").unlink()
    return run / "summary.json"


def break_cell(run: Path) -> Path:
    table = rows(run / "clients.csv")
    table[-1]["download_s"] = "fast"
    (run / "clients.csv").write_text(csv_text(list(table[0]), table))
    return run / "clients.csv"


def break_row(run: Path) -> Path:
    with (run / "rounds.csv").open("a") as fh:
        fh.write("4,1.0\n")
    return run / "rounds.csv"


def break_encoding(run: Path) -> Path:
    (run / "clients.csv").write_bytes(b"round,client\n\xff\xfe,1\n")
    return run / "clients.csv"


def unfinished_sweep(run: Path) -> Path:
    (run / "sweep.csv").write_text("point,run_dir,seed,status,exit_code,reason\np000-x,p000-x,3,failed,1,boom\n")
    for name in ("rounds.csv", "summary.json"):
        (run / name).unlink()
    return run / "sweep.csv"


@pytest.mark.parametrize("damage", [break_summary, break_cell, break_row, break_encoding, unfinished_sweep],
                         ids=["no summary.json", "a cell not a number", "a ragged row", "not UTF-8",
                              "a sweep without a finished point"])
def test_what_it_cannot_read_is_one_line_naming_the_file(run_dir, tmp_path, damage):
    named = damage(copy_run(run_dir, tmp_path / "run"))
    result = cli("report", tmp_path / "run", "--out", tmp_path / "r.html")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"edgefed: error: {named}:")
    assert not (tmp_path / "r.html").exists()


def test_a_folder_that_is_not_a_run_and_several_paths_without_out(run_dir, tmp_path):
    empty = cli("report", tmp_path)
    assert empty.returncode == 2 and empty.stderr.startswith(f"edgefed: error: {tmp_path / 'rounds.csv'}: missing")
    several = cli("report", run_dir, run_dir)
    assert several.returncode == 2 and "--out" in several.stderr and len(several.stderr.splitlines()) == 1


def browser():
    """Playwright's chromium launcher pointed at Debian's chromium; without either the test skips
    (fails under CI=true, where `make dev` installs them)."""
    missing = None if CHROMIUM.exists() else f"{CHROMIUM} missing (apt-get install chromium; `make dev` as root does)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(missing)
    return sync_playwright


def open_page(pw, path: Path):
    """The page in a fresh headless chromium, with every request, console error and page error
    recorded (a request for anything but the page itself, data: or blob: is also aborted)."""
    chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    seen = {"requests": [], "errors": []}
    own = path.resolve().as_uri()
    page.route("**/*", lambda route: route.continue_() if route.request.url == own else route.abort())
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("console", lambda message: seen["errors"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.goto(own)
    return chromium, page, seen, own


def count(page, selector: str) -> int:
    return page.locator(selector).count()


def test_the_report_draws_in_chromium_without_a_request(run_dir, sweep_dir, tmp_path):
    sync_playwright = browser()
    clients = [r for r in rows(run_dir / "clients.csv") if r["status"] != "excluded"]
    bars = sum(float(r[f"{p}_s"]) > 0 for r in clients for p in report.PHASES)
    evaluated = [r for r in rows(run_dir / "rounds.csv") if r["accuracy"]]
    sweep_page = tmp_path / "sweep.html"
    assert cli("report", sweep_dir, "--out", sweep_page).returncode == 0
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium, page, seen, own = open_page(pw, run_dir / "report.html")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 7")
        assert count(page, ".card") == 8 and "watch x2: needs" in page.inner_text(".cards")
        assert count(page, "#accuracy-time .scatterlayer path.point") == len(evaluated)
        assert count(page, "#run0-timeline .barlayer g.point") == bars
        assert count(page, "#run0-timeline .legendtext") == len(report.PHASES)
        assert count(page, "#run0-energy .barlayer .trace") == len(report.ENERGY)
        assert count(page, "#run0-bytes .barlayer g.point") == 2 * len(rows(run_dir / "rounds.csv"))
        page.locator("#run0-timeline").scroll_into_view_if_needed()
        box = page.locator("#run0-timeline .barlayer g.point path").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=3)
        page.wait_for_selector("#run0-timeline .hoverlayer .hovertext")
        hover = page.locator("#run0-timeline .hoverlayer").text_content()
        assert all(word in hover for word in ("client", "bytes up", "energy", "FLOP")), hover
        assert page.evaluate(OVERLAPS) == []
        page.screenshot(path=ARTIFACTS / "report.png", full_page=True)
        chromium.close()
        assert seen["errors"] == [] and seen["requests"] == [own]

        chromium, page, seen, own = open_page(pw, sweep_page)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 8")  # 4 + Pareto + 1st run
        assert count(page, "table.sortable tbody tr") == 4 and count(page, "details.run") == 3
        assert count(page, "#pareto .scatterlayer .trace:last-child path.point") == 2
        assert count(page, "#accuracy-time .scatterlayer .trace") == 3, "a band for the two seeds, two means"
        page.click("details.run:nth-of-type(2) > summary")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 11")
        page.click("table.sortable th:has-text('seed')")
        page.click("table.sortable th:has-text('seed')")
        assert page.inner_text("table.sortable tbody tr:first-child").split("\t")[2] == "4", "seeds, descending"
        assert page.evaluate(OVERLAPS) == []
        page.screenshot(path=ARTIFACTS / "report-sweep.png", full_page=True)
        chromium.close()
        assert seen["errors"] == [] and seen["requests"] == [own]


def test_a_run_on_a_topology_draws_its_graph_and_bytes_per_link(tmp_path):
    """The tiny fleet on the metro graph of tests/test_topology.py, aggregated at the edge sites: the
    page draws the topology (a line per link, a marker per node) and a line of bytes per link."""
    from tests.test_topology import METRO, with_graph
    data = with_graph(copy.deepcopy(TINY), at=["edge"])
    data["rounds"].update(max=2, clients_per_round=4)
    data["output"]["report"] = True
    assert cli("run", write_scenario(tmp_path, data), "--out", tmp_path / "net", "--quiet").returncode == 0
    sync_playwright = browser()
    with sync_playwright() as pw:
        chromium, page, seen, own = open_page(pw, tmp_path / "net" / "report.html")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 9")
        assert count(page, "#run0-topology .scatterlayer .trace") == len(METRO) + 1
        assert count(page, "#run0-topology .scatterlayer .trace:last-child path.point") == 6
        assert count(page, "#run0-links .scatterlayer .trace") == len(METRO)
        assert page.evaluate(OVERLAPS) == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#run0-topology").screenshot(path=ARTIFACTS / "report-topology.png")
        chromium.close()
        assert seen["errors"] == [] and seen["requests"] == [own]
