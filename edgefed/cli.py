"""The ``edgefed`` command line (docs/design.md, section 8).

Exit codes: 0 done, 2 bad input (one line on stderr naming the field or file), 1 runtime failure
(results so far kept).
"""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgefed.simulator.records import RoundObserver

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Discrete-event simulator of federated fine-tuning on edge devices.")
console = Console(stderr=True)
out = Console()


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version as installed

        typer.echo(f"edgefed {installed('edgefed')}")
        raise typer.Exit()


@app.callback()
def options(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                          help="print the version and exit")):
    """Options before any command (the app's help text is the Typer's own)."""


def fail_input(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    console.print(f"edgefed: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


class RoundProgress(RoundObserver):
    """Progress over rounds on stderr: a bar on a terminal; where stderr is a file or a pipe (batch
    jobs, CI logs) a plain line per round, since a bar would show nothing there."""

    def __init__(self, mode: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.mode = mode  # "bar", "lines" or "off"
        self.bar = Progress(TextColumn("[bold]round"), MofNCompleteColumn(), BarColumn(),
                            TextColumn("acc {task.fields[acc]}  sim {task.fields[sim]}"),
                            TimeElapsedColumn(), console=console, disable=mode != "bar")
        self.task = None
        self.acc = None

    def round_done(self, engine, round) -> None:
        record = round.record
        if record.accuracy is not None:
            self.acc = record.accuracy
        fields = {"acc": "-" if self.acc is None else f"{self.acc:.3f}", "sim": f"{record.sim_time_s:,.0f} s"}
        budget = getattr(engine.schedule, "evaluations", None)  # a cost budget: progress in its slots
        total, done, of = (engine.cfg.max_rounds, record.round, f"/{engine.cfg.max_rounds}") if budget is None else \
            (budget, engine.schedule.slot, f" ({engine.schedule.slot}/{budget} of the budget)")
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("rounds", total=total, **fields)
        self.bar.update(self.task, completed=done, **fields)
        if self.mode == "lines" and record.round > 0:
            print(f"round {record.round}{of}: accuracy {fields['acc']}, "
                  f"sim time {record.sim_time_s:,.1f} s, energy {record.energy_j:,.1f} J, "
                  f"bytes {record.bytes_up + record.bytes_down:,}", file=sys.stderr, flush=True)

    def close(self, engine, status) -> None:
        self.bar.stop()


@app.command()
def run(file: Path = typer.Argument(..., help="scenario YAML"),
        set_: list[str] = typer.Option([], "--set", help="override a field: dotted.path=value"),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (default: output.dir/NAME)"),
        resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its last checkpoint"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar or per-round lines")):
    """Run a scenario and write its run directory."""
    from edgefed.simulator.engine import Diverged
    from edgefed.runner import default_run_dir, run_scenario
    from edgefed.scenario import ScenarioError, load_scenario

    try:
        if resume is not None and out_dir is not None and resume.resolve() != out_dir.resolve():
            raise ScenarioError(f"--out {out_dir}: a resumed run stays in its own folder ({resume})")
        scenario, base = load_scenario(file, set_)
        note_recorded_versions(file, scenario)
        run_dir = resume or out_dir or default_run_dir(scenario)
        mode = "off" if quiet else "bar" if sys.stderr.isatty() else "lines"
        summary = run_scenario(scenario, base, run_dir, RoundProgress(mode), resume=resume is not None)
    except ScenarioError as exc:
        fail_input(str(exc))
    except Diverged as exc:
        console.print(f"edgefed: {exc}; run stopped, results so far kept in {run_dir}", markup=False,
                      highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    print_summary(summary, run_dir)


def note_recorded_versions(file: Path, scenario) -> None:
    """A run directory's scenario.yaml records the versions and device that ran it. The same seed
    gives the same metrics only on the same versions and kind of device, so a re-run says which
    differ now (one line on stderr); it still runs."""
    from edgefed.provenance import versions
    from edgefed.runner import device_kind

    recorded = scenario.recorded_versions
    if recorded is None:
        return
    now = {**versions(), "device": device_kind(scenario)}
    ran = {**recorded, "device": str(recorded.get("device", "")).split(":")[0] or None}  # cuda:0 (name) -> cuda
    differ = [f"{key} {ran[key]} -> {value}" for key, value in now.items() if key in ran and str(ran[key]) != str(value)]
    if differ:
        console.print(f"edgefed: note: {file} was recorded by other versions or device ({'; '.join(differ)}): "
                      "metrics may differ from that run's", markup=False, highlight=False, soft_wrap=True)


def print_summary(summary: dict, run_dir: Path) -> None:
    from edgefed.results import REPORT

    table = Table(title=f"edgefed run: {run_dir}", show_header=False)
    fmt = lambda v, unit="": "-" if v is None else (f"{v:,.4g}{unit}" if isinstance(v, float) else f"{v:,}{unit}")  # noqa: E731
    totals = summary["totals"]
    rows = [
        ("accuracy round 0 -> final (best)", f"{fmt(summary['initial_accuracy'])} -> {fmt(summary['final_accuracy'])} ({fmt(summary['best_accuracy'])})"),
        ("target accuracy", fmt(summary["target_accuracy"])),
        ("rounds / time to target", f"{fmt(summary['rounds_to_target'])} / {fmt(summary['time_to_target_s'], ' s')}"),
        ("energy / bytes to target", f"{fmt(summary['energy_to_target_j'], ' J')} / {fmt(summary['bytes_to_target'], ' B')}"),
        ("simulated time", fmt(totals["sim_time_s"], " s")),
        ("fleet energy", fmt(totals["energy_j"], " J")),
        ("bytes up / down", f"{totals['bytes_up']:,} / {totals['bytes_down']:,}"),
        ("client compute", fmt(totals["client_flops"] / 1e12, " TFLOP")),
        ("excluded devices", ", ".join(f"{e['device']} x{e['count']}" for e in summary["excluded"]) or "none"),
        ("host time", fmt(summary["host_seconds"], " s")),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    plot = run_dir / "plots" / "time_to_accuracy.png"
    if plot.exists():
        out.print(f"plot: {plot}")
    if (run_dir / REPORT).exists():
        out.print(f"report: {run_dir / REPORT}")
    out.print(f"results: {run_dir}")


@app.command()
def validate(file: Path = typer.Argument(..., help="scenario YAML"),
             set_: list[str] = typer.Option([], "--set", help="override a field: dotted.path=value")):
    """Print the resolved scenario, or one line naming what is wrong (exit 2)."""
    import yaml

    from edgefed.scenario import ScenarioError, load_scenario, scenario_dict

    try:
        scenario, _ = load_scenario(file, set_)
    except ScenarioError as exc:
        fail_input(str(exc))
    typer.echo(yaml.safe_dump(scenario_dict(scenario), sort_keys=False, width=float("inf")), nl=False)


class SchemaFormat(str, Enum):
    json = "json"
    markdown = "markdown"


class SchemaOf(str, Enum):
    scenario = "scenario"
    comparison = "comparison"


@app.command()
def schema(out_file: Optional[Path] = typer.Option(None, "--out", help="write it here instead of stdout"),
           format_: SchemaFormat = typer.Option(SchemaFormat.json, "--format",
                                                help="json: the JSON Schema; markdown: the field reference"),
           of: SchemaOf = typer.Option(SchemaOf.scenario, "--of", help="a scenario's or a comparison file's")):
    """Print or write the JSON Schema of a scenario (or, --of comparison, of a comparison file), for
    editors' completion and checking, or its Markdown reference (docs/scenarios.md, docs/comparisons.md)."""
    if of is SchemaOf.comparison:
        from edgefed.comparison import json_schema
    else:
        from edgefed.scenario import json_schema

    if format_ is SchemaFormat.json:
        emit(json_schema(), out_file)
        return
    from edgefed.docgen import comparison_markdown, scenario_markdown

    markdown = comparison_markdown if of is SchemaOf.comparison else scenario_markdown
    emit(markdown(json.loads(json_schema())), out_file)


def emit(text: str, out_file: Optional[Path]) -> None:
    """``text`` on stdout, or written to ``out_file`` (a line on stdout says so)."""
    from edgefed.results import atomic_write

    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        atomic_write(out_file, text)
    except OSError as exc:
        fail_input(f"{out_file}: cannot write: {exc.strerror}")
    out.print(f"wrote {out_file}", markup=False, highlight=False)


class DevicesFormat(str, Enum):
    table = "table"
    markdown = "markdown"


@app.command()
def devices(scenario_file: Optional[Path] = typer.Option(None, "--scenario", help="show who can run this scenario "
                                                        "and the quantiles of its drawn populations"),
            as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
            format_: DevicesFormat = typer.Option(DevicesFormat.table, "--format",
                                                  help="table, or markdown: the catalog with its citations"),
            out_file: Optional[Path] = typer.Option(None, "--out", help="with --format markdown: write it here")):
    """The device and link catalog; with --scenario, which devices can hold the method and what its
    population groups drew."""
    from edgefed.devices.profile import default_catalog

    catalog = default_catalog()
    if format_ is DevicesFormat.markdown:
        if scenario_file is not None or as_json:
            fail_input("--format markdown: documents the catalog alone; drop --scenario and --json")
        from edgefed.docgen import catalog_markdown

        emit(catalog_markdown(catalog), out_file)
        return
    if out_file is not None:
        fail_input("--out: only with --format markdown")
    profiles, peak, drawn = catalog.devices, None, []
    if scenario_file is not None:
        from edgefed.build import build_learning
        from edgefed.scenario import ScenarioError, load_scenario
        try:
            scenario, base = load_scenario(scenario_file)
            peak = build_learning(scenario, base).peak_memory_bytes()
            profiles = scenario.fleet.profiles()[0]  # the catalog plus the scenario's own devices
            drawn = drawn_populations(scenario, base, peak)
        except ScenarioError as exc:
            fail_input(str(exc))
    if as_json:
        out.print_json(json.dumps({"devices": {k: v.model_dump() for k, v in catalog.devices.items()},
                                   "links": {k: v.model_dump() for k, v in catalog.links.items()},
                                   "peak_memory_bytes": peak, "populations": drawn}))
        return
    print_catalog(profiles, catalog.links, peak)
    for group in drawn:
        print_population(group, peak)


def print_catalog(profiles: dict, links: dict, peak: int | None) -> None:
    """The devices (every ``DeviceProfile`` field, as docs/devices.md shows them; for a scenario,
    whether each can hold its method) and the links."""
    from edgefed.docgen import device_table
    from edgefed.simulator.energy import radio_w

    table = Table(title="devices" + (f" (method needs {peak / 1e9:.2f} GB)" if peak else ""))
    header, rows = device_table(profiles)
    for col in ("id", *header, *(["can run"] if peak else [])):
        table.add_column(col, no_wrap=col == "id", overflow="fold")
    for (key, d), row in zip(profiles.items(), rows):
        table.add_row(key, *row, *(["yes" if d.memory_bytes >= peak else "[red]no[/red]"] if peak else []))
    out.print(table)
    table = Table(title="links")
    for col in ("id", "up Mbps", "down Mbps", "latency ms", "active W (up/down)", "tail s @ W"):
        table.add_column(col, no_wrap=col == "id")
    for key, link in links.items():
        table.add_row(key, f"{link.up_mbps:g}", f"{link.down_mbps:g}", f"{link.latency_s * 1e3:g}",
                      f"{radio_w(link, 'up'):.2f} / {radio_w(link, 'down'):.2f}", f"{link.tail_s:g} @ {link.tail_w:g}")
    out.print(table)


def print_population(group: dict, peak: int | None) -> None:
    """A population group's drawn devices: quantiles of each figure, and how many hold the method."""
    table = Table(title=f"fleet.groups.{group['group']}: {group['count']:,} devices drawn from "
                        f"{group['population']} (seed {group['seed']}), like {group['like']}, link {group['link']}")
    for col in ("figure", "min", "p10", "p50", "p90", "max"):
        table.add_column(col, no_wrap=True)
    labels = {"flops": f"{group['dtype']} GFLOP/s", "memory_bytes": "usable GB", "up_mbps": "up Mbps",
              "down_mbps": "down Mbps"}
    for figure, values in group["quantiles"].items():
        scale = 1e9 if figure in ("flops", "memory_bytes") else 1.0
        table.add_row(labels[figure], *(f"{v / scale:,.3g}" for v in values.values()))
    out.print(table)
    out.print(f"can hold the method ({peak / 1e9:.2f} GB): {group['can_hold']:,} of {group['count']:,} devices; "
              f"{group['kinds']:,} kinds of device drawn", markup=False, highlight=False, soft_wrap=True)


@app.command("convert-fedscale")
def convert_fedscale(capacity: Path = typer.Argument(..., help="FedScale's pickled client_device_capacity"),
                     out_file: Optional[Path] = typer.Option(None, "--out", help="the population CSV to write"),
                     behaviour: Optional[Path] = typer.Option(None, "--behaviour", help="its client_behave_trace, "
                                                              "for availability windows"),
                     sample_flops: float = typer.Option(6e8, "--sample-flops", help="FLOP of the inference the "
                                                        "trace timed (default: MobileNet-V2, 0.6 GFLOP)"),
                     memory_bytes: float = typer.Option(3.5e9, "--memory-bytes", help="usable memory of every "
                                                        "client (FedScale gives none)"),
                     horizon_s: float = typer.Option(7 * 86400.0, "--horizon-s", help="with --behaviour: simulated "
                                                     "seconds its periodic windows are unrolled over")):
    """FedScale's device traces as a population CSV (`population: FILE.csv`), read without
    unpickling any object."""
    from edgefed.devices.fedscale import TraceError, convert

    if out_file is None:
        fail_input("--out: name the population CSV to write (--out FILE.csv)")
    try:
        done = convert(capacity, behaviour, out_file, sample_flops, memory_bytes, horizon_s)
    except TraceError as exc:
        fail_input(str(exc))
    out.print(f"wrote {out_file}: {done['rows']:,} devices, {done['with_windows']:,} with availability windows"
              f" ({done['never_on']:,} never on left out, {done['behaviour_only']:,} behaviour-only ids unused)",
              markup=False, highlight=False, soft_wrap=True)


def drawn_populations(scenario, base: Path, peak: int) -> list[dict]:
    """Per population group of the scenario: the quantiles of its devices' FLOP/s (the scenario's
    dtype), usable memory and up/down Mbps as the fleet holds them, and how many hold ``peak``."""
    import numpy as np

    from edgefed.build import build_fleet
    from edgefed.devices.population import quantiles

    fleet = build_fleet(scenario, base)
    offsets = np.cumsum([0, *(g.count for g in scenario.fleet.groups)])
    flops = np.array([g.device.peak_flops(scenario.model.dtype) for g in fleet.groups])
    memory = np.array([g.device.memory_bytes for g in fleet.groups])
    rows = []
    for i, group in enumerate(scenario.fleet.groups):
        if group.population is None:
            continue
        ids = np.arange(offsets[i], offsets[i + 1])
        kinds = fleet.group[ids]
        rows.append({"group": i, "population": group.population, "count": group.count, "seed": scenario.seed,
                     "like": scenario.fleet.template_name(group), "link": scenario.fleet.link_name(group),
                     "dtype": scenario.model.dtype, "kinds": int(np.unique(kinds).size),
                     "can_hold": int(np.count_nonzero(memory[kinds] >= peak)),
                     "quantiles": {"flops": quantiles(flops[kinds]), "memory_bytes": quantiles(memory[kinds]),
                                   "up_mbps": quantiles(fleet.up_mbps[ids]),
                                   "down_mbps": quantiles(fleet.down_mbps[ids])}})
    return rows


@app.command()
def calibrate(out_file: Path = typer.Option(Path("host.yaml"), "--out", help="device profile YAML to write"),
              active_w: float = typer.Option(65.0, "--active-w", help="host power under load, W (not measurable here)"),
              idle_w: float = typer.Option(10.0, "--idle-w", help="host idle power, W")):
    """Measure this host (GEMM FLOP/s, memory bandwidth, RNG rate) and write a `host` device profile
    for `fleet.devices_file`."""
    import yaml

    from edgefed.calibrate import host_profile

    if not 0 <= idle_w <= active_w:
        fail_input(f"--idle-w: must be between 0 and --active-w ({active_w:g}), got {idle_w:g}")
    profile = host_profile(active_w, idle_w)
    entry = profile.model_dump(exclude={"name"})
    try:
        out_file.write_text(yaml.safe_dump({"devices": {"host": entry}}, sort_keys=False))
    except OSError as exc:
        fail_input(f"{out_file}: cannot write: {exc.strerror}")
    out.print(f"host: GEMM {profile.flops['fp32'] / 1e9:,.1f} GFLOP/s, memory {profile.mem_bandwidth / 1e9:,.1f} GB/s, "
              f"RNG {profile.rng_flops / 1e9:,.2f} GFLOP-eq/s, usable memory {profile.memory_bytes / 1e9:,.1f} GB")
    out.print(f"wrote {out_file} (use it with fleet.devices_file and a group `device: host`)")


@app.command()
def sweep(file: Path = typer.Argument(..., help="sweep YAML (a base scenario and a grid of dotted-path values)"),
          backend: str = typer.Option("local", "--backend", help="local processes or ray (RAY_ADDRESS or a local Ray)"),
          workers: int = typer.Option(1, "--workers", min=1, help="points run at once"),
          out_dir: Optional[Path] = typer.Option(None, "--out", help="sweep folder (default: runs/<sweep file stem>)")):
    """Run every point of a sweep that is not finished yet; write sweep.csv."""
    from edgefed.scenario import ScenarioError
    from edgefed.sweep import run_sweep

    if backend not in ("local", "ray"):
        fail_input(f"--backend: expected local or ray (got {backend!r})")
    target = out_dir or Path("runs") / file.stem
    try:
        result = run_sweep(file, target, backend, workers,
                           on_done=lambda pid, s: console.print(f"done {pid}: final accuracy {s['final_accuracy']}"))
    except ScenarioError as exc:
        fail_input(str(exc))
    for pid, why in result["failed"].items():
        console.print(f"failed {pid} (exit {why['exit_code']}): {why['reason']}", markup=False, highlight=False)
    out.print(f"{len(result['ran']) - len(result['failed'])} points run, {len(result['failed'])} failed, "
              f"{len(result['skipped'])} already complete; table: {result['csv']}")
    if result["failed"]:
        raise typer.Exit(1)


@app.command()
def compare(file: Path = typer.Argument(..., help="comparison YAML (docs/compare.md)"),
            out_dir: Optional[Path] = typer.Option(None, "--out", help="comparison folder (default: runs/<name>)"),
            workers: int = typer.Option(1, "--workers", min=1, help="runs at once"),
            backend: str = typer.Option("local", "--backend", help="local processes or ray (RAY_ADDRESS or a local Ray)"),
            plan: bool = typer.Option(False, "--plan", help="print each stage's runs, budget and total cost; run nothing")):
    """Compare methods under one fair protocol: tune every arm at the report budget, run the picks on
    paired seeds, and say what the paired differences show. A rerun continues where it stopped."""
    from edgefed.comparing import compare as run_comparison, default_out
    from edgefed.comparison import CompareFailed, load_comparison, plan_text
    from edgefed.scenario import ScenarioError

    if backend not in ("local", "ray"):
        fail_input(f"--backend: expected local or ray (got {backend!r})")
    try:
        comparison = load_comparison(file)
        if plan:
            typer.echo(plan_text(comparison))
            return
        with RunProgress() as progress:
            result = run_comparison(comparison, out_dir or default_out(comparison), backend, workers,
                                    on_run=progress.run_done, on_stage=progress.stage)
    except ScenarioError as exc:
        fail_input(str(exc))
    except CompareFailed as exc:
        console.print(f"edgefed: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    for line in result["sentences"] + result["caveats"]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    folder = out_dir or default_out(comparison)
    out.print(f"compare.json, summary.md and report.html in {folder}", markup=False, highlight=False)


class RunProgress:
    """A comparison's progress on stderr: a bar per stage on a terminal, else a line per finished run."""

    def __init__(self):
        self.mode = "bar" if console.is_terminal else "lines"
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, disable=self.mode != "bar")
        self.task = None

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def stage(self, name: str, todo: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(name, total=todo)

    def run_done(self, stage: str, run, result: dict) -> None:
        self.bar.advance(self.task)
        if self.mode == "lines":
            what = (f"failed (exit {result['failed']['exit_code']}): {result['failed']['reason']}" if "failed" in result
                    else f"{result['status']}, {result['rounds']} rounds, test accuracy {result['final_accuracy']:.3f}")
            print(f"{stage}: {run.folder} {what}", file=sys.stderr, flush=True)


@app.command()
def regress(update: bool = typer.Option(False, "--update", help="rewrite the goldens and show what changed"),
            folder: Path = typer.Option(Path("scenarios/regression"), "--dir", help="regression scenarios")):
    """Rerun the regression scenarios against their goldens (systems exact, accuracy within tolerance)."""
    import edgefed.regress as reg
    from edgefed.scenario import ScenarioError

    files = reg.scenario_files(folder)
    if not files:
        fail_input(f"{folder}: no regression scenarios (*.yaml)")
    failed = 0
    for file in files:
        try:
            if update:
                diff = reg.update(file)
                out.print(diff or f"{file.stem}: goldens unchanged", markup=False, highlight=False, soft_wrap=True)
                continue
            problems = reg.check(file)
        except ScenarioError as exc:
            fail_input(str(exc))
        failed += bool(problems)
        out.print(f"{file.stem}: {'FAIL' if problems else 'ok'}", markup=False)
        for line in problems:
            out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def plot(paths: list[Path] = typer.Argument(..., help="run directories and/or sweep directories"),
         x: str = typer.Option("time", "--x", help="time | energy | bytes | flops"),
         pareto: bool = typer.Option(False, "--pareto", help="time vs energy to target, one point per group"),
         target: Optional[float] = typer.Option(None, "--target", help="target accuracy (default: the runs' own)"),
         out_file: Optional[Path] = typer.Option(None, "--out", help="FILE.png, FILE.svg or FILE.pdf "
                                                 "(default: PNG and SVG under the first path's plots/)")):
    """Overlay runs and sweeps: accuracy vs time, energy, bytes or FLOPs (mean and spread over seeds)."""
    import edgefed.plots as plots

    if x not in plots.AXES:
        fail_input(f"--x: expected one of {', '.join(plots.AXES)} (got {x!r})")
    if out_file is not None and out_file.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail_input(f"--out {out_file}: expected a .png, .svg or .pdf file")
    try:
        groups = plots.collect(paths)
    except plots.PlotInputError as exc:
        fail_input(str(exc))
    if not groups:
        fail_input(f"{paths[0]}: no finished runs to plot")
    stem = "pareto_time_energy" if pareto else f"accuracy_vs_{x}"
    files = [paths[0] / "plots" / f"{stem}{ext}" for ext in (".png", ".svg")] if out_file is None else [out_file]
    for path in files:
        if pareto:
            written = plots.plot_pareto(groups, path, target)
        else:
            written = plots.plot_overlay(groups, x, path, plots.common_target(groups) if target is None else target)
        out.print(f"plot: {written}")


@app.command()
def report(paths: list[Path] = typer.Argument(..., help="run directories and/or sweep directories"),
           out_file: Optional[Path] = typer.Option(None, "--out", help="the HTML file (default: PATH/report.html; "
                                                   "needed for several paths)")):
    """One self-contained HTML page of runs and sweeps: summary, accuracy curves, the per-client
    timeline, energy and bytes, the scenario and provenance; prints its path."""
    from edgefed.report import write_report
    from edgefed.results import REPORT, RunDirError

    if out_file is None and len(paths) > 1:
        fail_input("--out: name the HTML file for a report of several paths (--out FILE.html)")
    target = out_file or paths[0] / REPORT
    try:
        write_report(paths, target)
    except RunDirError as exc:
        fail_input(str(exc))
    except OSError as exc:
        fail_input(f"{target}: cannot write: {exc.strerror}")
    out.print(f"report: {target}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("edgefed: interrupted; results so far are kept")
        sys.exit(130)


if __name__ == "__main__":
    main()
