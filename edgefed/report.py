"""``edgefed report``: one self-contained HTML page of runs and sweeps, drawn with Plotly.

What only a discrete-event simulation can show is in clients.csv: who was downloading, computing,
uploading or waiting in each round, who was late, dropped or rejected, and where the energy went.
The page draws it as a per-client timeline beside the summary cards, the accuracy curves (runs
that differ only by seed as a band), energy by device class and phase, bytes per round, for a run on
a topology its graph and the bytes per link per round (links.csv), the resolved scenario and the
provenance; for a sweep also its grid and the time-vs-energy-to-target
Pareto plot.

Plotly, because its Python package ships plotly.js, which the page inlines once (about 4.8 MB):
the page opens offline and requests nothing. Its charts zoom and hover without any code of ours.
The same folders give the same bytes: fixed element ids, no timestamps, numbers as float32
(a timeline bar costs about 70 bytes). A run whose timeline has more than its share of
``MAX_BARS`` bars is drawn per device class and round instead, and the page says so.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np
import plotly.graph_objects as go
import yaml
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

import edgefed.docgen as docgen
import edgefed.plots as plots
from edgefed.results import RunDirError, atomic_write, read_columns, read_json, read_table, read_text
from edgefed.simulator.topology import CLOUD, TIERS, Topology, TopologySpec

MAX_BARS = 20_000  # timeline bars on one page, shared by its runs
TICKS = 60  # clients (or classes) the timeline names on its axis; more: hover tells
PHASES = ("download", "compute", "upload", "idle")
PHASE_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#c9c9c9")
STATUS_PATTERNS = {"late": "/", "cut": "|", "dropped": "x", "rejected": "\\", "stale": ".", "cancelled": "-"}  # ok: plain
ENERGY = {"compute": "energy_compute_j", "radio": "energy_radio_j", "idle": "energy_idle_j"}
ENERGY_COLOURS = (PHASE_COLOURS[1], PHASE_COLOURS[0], PHASE_COLOURS[3])  # compute, radio (transfers), idle
ROUND_COLUMNS = ("round", "sim_time_s", "accuracy", "bytes_up", "bytes_down", "energy_j", "client_flops")
CLIENT_COLUMNS = ("round", "client", *(f"{p}_s" for p in PHASES), *ENERGY.values(), "bytes_up", "bytes_down", "flops")
OPTIONAL = ("backhaul_bytes_up", "backhaul_bytes_down", "start_s", "edge_round")
SWEEP_FIGURES = ("status", "final_accuracy", "best_accuracy", "rounds_to_target", "time_to_target_s",
                 "energy_to_target_j", "bytes_to_target", "client_flops_to_target", "totals.sim_time_s",
                 "totals.energy_j", "reason")
CLIENT_HOVER = ("client %{customdata[0]} (%{text}), round %{customdata[1]}<br>bytes up %{customdata[2]:,.0f}, "
                "down %{customdata[3]:,.0f}<br>energy %{customdata[4]:.4~s}J, %{customdata[5]:.4~s}FLOP")
CLASS_HOVER = ("%{text}<br>mean client: bytes up %{customdata[2]:,.0f}, down %{customdata[3]:,.0f}<br>"
               "energy %{customdata[4]:.4~s}J, %{customdata[5]:.4~s}FLOP")


@dataclass
class Text:
    """A text column as codes into its distinct values (a million rows name a few devices);
    ``column[rows]`` gives the rows' strings."""

    values: np.ndarray
    codes: np.ndarray

    def __getitem__(self, rows) -> np.ndarray:
        return self.values[self.codes[rows]]


@dataclass
class Run:
    """One run directory as the page needs it: its tables by column, its texts as written."""

    dir: Path
    label: str
    summary: dict
    rounds: dict[str, np.ndarray]
    clients: dict[str, np.ndarray | Text]
    scenario: str
    provenance: dict | None
    links: list[dict] | None = None  # links.csv's rows (a run with a topology)


def columns(path: Path, numeric: tuple[str, ...], text: tuple[str, ...] = ()) -> dict[str, np.ndarray | Text]:
    """A table's ``numeric`` columns, and those of ``OPTIONAL`` it has, as float arrays; its
    ``text`` columns as Text."""
    table = read_columns(path, {*numeric, *OPTIONAL})
    missing = [name for name in (*numeric, *text) if name not in table]
    if missing:
        raise RunDirError(f"{path}: no column {missing[0]!r}")
    out: dict[str, np.ndarray | Text] = {name: np.asarray(table[name]) for name in (*numeric, *OPTIONAL)
                                         if name in table}
    for name in text:
        index = {value: i for i, value in enumerate(dict.fromkeys(table[name]))}
        out[name] = Text(np.array(list(index), dtype=str),
                         np.fromiter(map(index.__getitem__, table[name]), dtype=np.int64, count=len(table[name])))
    return out


def read_run(run_dir: Path, label: str) -> Run:
    """A run directory's summary, tables, scenario and provenance; RunDirError names what is wrong."""
    summary = read_json(run_dir / "summary.json")
    rounds = columns(run_dir / "rounds.csv", ROUND_COLUMNS)
    clients = columns(run_dir / "clients.csv", CLIENT_COLUMNS, ("device", "status", "note"))
    scenario = read_text(run_dir / "scenario.yaml") if (run_dir / "scenario.yaml").exists() else ""
    provenance = read_json(run_dir / "provenance.json") if (run_dir / "provenance.json").exists() else None
    links = read_table(run_dir / "links.csv") if (run_dir / "links.csv").exists() else None
    return Run(run_dir, label, summary, rounds, clients, scenario, provenance, links)


def gather(paths: list[Path]) -> tuple[list[Run], dict[str, list[Path]], dict[Path, list[dict]]]:
    """The runs of ``paths`` (runs of one scenario up to its seed, and a sweep's points, grouped as
    ``edgefed plot`` groups them) and each sweep's sweep.csv rows."""
    sweeps = {}
    for path in paths:
        if (path / "sweep.csv").is_file():
            rows = sweeps[path] = read_table(path / "sweep.csv")
            if not any(row.get("status") == "done" for row in rows):
                raise RunDirError(f"{path / 'sweep.csv'}: no finished point to report")
        elif not (path / "rounds.csv").is_file():
            raise RunDirError(f"{path / 'rounds.csv'}: missing (not an edgefed run directory, nor a sweep)")
    groups = plots.collect(paths)
    runs = [read_run(run_dir, label) for label, dirs in groups.items() for run_dir in dirs]
    return runs, groups, sweeps


# -- charts ----------------------------------------------------------------------------------
def f4(values) -> np.ndarray:
    """Chart data as float32: plotly writes it as base64, 5.3 bytes a number."""
    return np.asarray(values, dtype=np.float32)


#: the band at a chart's top that Plotly's mode bar takes: the title goes under it, left-aligned
MODEBAR_PX = 30


def figure(title: str, xlabel: str, ylabel: str, height: int = 340, **layout) -> go.Figure:
    """A chart with the page's look (no template: plotly.js's defaults, not 8 kB of template per chart).
    The title sits under the mode bar's band, and the x axis's title and a legend put in the
    container's bottom (``yref: container``) each push the bottom margin: nothing meets."""
    return go.Figure(layout={"template": {}, "height": height,
                             "title": {"text": title, "font": {"size": 14}, "x": 0, "xref": "paper", "xanchor": "left",
                             "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": MODEBAR_PX}},
                             "margin": {"l": 60, "r": 20, "t": MODEBAR_PX + 30, "b": 45},
                             "xaxis": {"title": {"text": xlabel}, "automargin": True},
                             "yaxis": {"title": {"text": ylabel}}, "legend": {"font": {"size": 11}},
                             "colorway": qualitative.Plotly, **layout})


def short(label: str, most: int = 60) -> str:
    """A legend entry: a sweep's labels name whole mappings of values."""
    return label if len(label) <= most else label[: most - 1] + "…"


def accuracy_figures(groups: dict[str, list[Path]]) -> dict[str, go.Figure]:
    """Accuracy against simulated time, fleet energy, bytes and client FLOPs: each group's mean over
    its seeds, the band their min to max (as ``edgefed plot`` draws them)."""
    target = plots.common_target(groups)
    out = {}
    for x, (key, xlabel, scale) in plots.AXES.items():
        fig = figure(f"accuracy vs {xlabel.split(' (')[0]}", xlabel, "held-out accuracy",
                     legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "font": {"size": 11}})
        for i, (label, runs) in enumerate(groups.items()):
            mx, my, lo, hi = plots.mean_curve(runs, key)
            colour = qualitative.Plotly[i % len(qualitative.Plotly)]
            if len(runs) > 1:
                fig.add_trace(go.Scatter(x=f4(np.r_[mx, mx[::-1]] * scale), y=f4(np.r_[hi, lo[::-1]]), fill="toself",
                                         fillcolor=colour, opacity=0.2, line={"width": 0}, hoverinfo="skip",
                                         legendgroup=label, showlegend=False))
            seeds = f" (mean of {len(runs)} seeds)" if len(runs) > 1 else ""
            fig.add_trace(go.Scatter(x=f4(mx * scale), y=f4(my), name=short(label) + seeds, legendgroup=label,
                                     mode="lines+markers", line={"color": colour}, marker={"size": 5}))
        if target is not None:
            fig.add_hline(y=target, line={"dash": "dash", "color": "grey", "width": 1},
                          annotation_text=f"target {target:g}")
        out[f"accuracy-{x}"] = fig
    return out


def session_starts(run: Run) -> np.ndarray:
    """When each clients.csv row's work began: its session's ``start_s`` (asynchronous rounds),
    else the end of the round before (a later edge round's row after the client's earlier ones)."""
    c = run.clients
    if "start_s" in c:
        return c["start_s"]
    last = int(max(run.rounds["round"].max(initial=0), c["round"].max(initial=0)))
    ends = np.zeros(last + 1)
    ends[run.rounds["round"].astype(int)] = run.rounds["sim_time_s"]
    starts = ends[np.maximum(c["round"].astype(int) - 1, 0)]
    if "edge_round" in c and starts.size:
        starts = starts + earlier_edge_rounds(c)
    return starts


def earlier_edge_rounds(c: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the time its client spent in the same cloud round's earlier edge rounds."""
    took = sum(c[f"{p}_s"] for p in PHASES)
    order = np.lexsort((c["edge_round"], c["client"], c["round"]))
    spent = np.cumsum(took[order]) - took[order]
    first = np.r_[True, (np.diff(c["round"][order]) != 0) | (np.diff(c["client"][order]) != 0)]
    group_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    out = np.empty_like(took)
    out[order] = spent - spent[group_start]
    return out


def phase_bars(y, starts, durations, hatched, custom, text, hover: str) -> list[go.Bar]:
    """One horizontal bar trace per phase (its colour); each bar placed after the phases before it
    and hatched by its status (plain bars first: the legend shows a trace's first bar)."""
    first = np.argsort(hatched != "", kind="stable")
    y, starts, durations, hatched, custom, text = (a[first] for a in (y, starts, durations, hatched, custom, text))
    begins = starts[:, None] + np.cumsum(durations, axis=1) - durations
    traces = []
    for i, phase in enumerate(PHASES):
        keep = durations[:, i] > 0
        marker = {"color": PHASE_COLOURS[i], "line": {"width": 0}}
        if any(hatched):
            marker["pattern"] = {"shape": hatched[keep].tolist(), "fillmode": "overlay", "fgcolor": "#333", "size": 6}
        traces.append(go.Bar(name=phase, orientation="h", y=f4(y[keep]), x=f4(durations[keep, i]),
                             base=np.round(begins[keep, i], 3).tolist(), marker=marker, customdata=f4(custom[keep]),
                             text=text[keep].tolist(), textposition="none",
                             hovertemplate=f"<b>{phase}</b> %{{x:.3f}} s from %{{base:.3f}} s<br>{hover}"
                                           "<extra></extra>"))
    return traces


def device_classes(device: Text, rows) -> tuple[np.ndarray, np.ndarray]:
    """The device classes and each row's (an index into them): a catalog device is its own class;
    a device drawn from a population (``population:name``) belongs to its population's."""
    names, of_value = np.unique([d.split(":", 1)[0] for d in device.values.tolist()], return_inverse=True)
    return names.astype(str), of_value[device.codes[rows]]


def per_client(c: dict[str, np.ndarray], rows: np.ndarray, starts, durations) -> tuple[list, list[str]]:
    """Every client's phases in every round: a row per client, grouped by device."""
    device, client, status = c["device"][rows], c["client"][rows], c["status"][rows]
    ids, first = np.unique(client, return_index=True)
    order = np.lexsort((ids, device[first]))
    position = np.empty(ids.size)
    position[order] = np.arange(ids.size)
    text = np.array([f"{d}, {s}" + (f": {n}" if n else "") for d, s, n in
                     zip(device.tolist(), status.tolist(), c["note"][rows].tolist())], dtype=str)
    energy = sum(c[k][rows] for k in ENERGY.values())
    custom = np.stack([client, c["round"][rows], c["bytes_up"][rows], c["bytes_down"][rows], energy,
                       c["flops"][rows]], axis=1)
    hatched = np.array([STATUS_PATTERNS.get(s, "") for s in status.tolist()], dtype=str)
    traces = phase_bars(position[np.searchsorted(ids, client)], starts[rows], durations[rows], hatched, custom,
                        text, CLIENT_HOVER)
    return traces, [f"{int(i)} {d}" for i, d in zip(ids[order], device[first][order].tolist())]


def per_class(c: dict[str, np.ndarray], rows: np.ndarray, starts, durations) -> tuple[list, list[str]]:
    """The mean client of each device class in each round (hatched where any was not ok), with its
    clients' count and statuses in the hover."""
    names, cls = device_classes(c["device"], rows)
    rnd = c["round"][rows].astype(np.int64)
    span = int(rnd.max(initial=0)) + 1
    keys, group, counts = np.unique(cls * span + rnd, return_inverse=True, return_counts=True)

    def mean(values):
        return np.bincount(group, weights=values, minlength=keys.size) / counts

    status, codes = c["status"], c["status"].codes[rows]
    by_status = {status.values[i]: np.bincount(group, weights=codes == i, minlength=keys.size).astype(int)
                 for i in sorted(np.unique(codes).tolist(), key=status.values.__getitem__)}
    text = np.array([f"{names[k // span]}, round {k % span}: {n} clients ("
                     + ", ".join(f"{s} {by_status[s][g]}" for s in by_status if by_status[s][g]) + ")"
                     for g, (k, n) in enumerate(zip(keys.tolist(), counts.tolist()))], dtype=str)
    energy = sum(c[k][rows] for k in ENERGY.values())
    custom = np.stack([counts, keys % span, *(mean(c[k][rows]) for k in ("bytes_up", "bytes_down")), mean(energy),
                       mean(c["flops"][rows])], axis=1)
    hatched = np.where(by_status.get("ok", 0) < counts, "/", "")
    means = np.stack([mean(durations[rows, i]) for i in range(len(PHASES))], axis=1)
    return phase_bars(keys // span, mean(starts[rows]), means, hatched, custom, text, CLASS_HOVER), names.tolist()


def timeline(run: Run, budget: int) -> tuple[go.Figure, str]:
    """The per-client Gantt chart and the line under it saying what its bars are."""
    c = run.clients
    durations = np.stack([c[f"{p}_s"] for p in PHASES], axis=1)
    rows = np.flatnonzero(durations.sum(axis=1) > 0)  # an excluded device's round-0 row took no time
    bars = int(np.count_nonzero(durations[rows] > 0))
    starts = session_starts(run)
    status = c["status"]
    shown = sorted(s for s in status.values[np.unique(status.codes[rows])].tolist() if s in STATUS_PATTERNS)
    hatching = "; hatched: " + ", ".join(f"{STATUS_PATTERNS[s]} {s}" for s in shown) if shown else ""
    if bars <= budget:
        traces, labels = per_client(c, rows, starts, durations)
        note = (f"Every client's download, compute, upload and idle time in every round ({bars:,} bars{hatching})."
                " Drag to zoom, double-click to zoom out; hover for device, bytes, energy, FLOPs and note.")
    else:
        traces, labels = per_class(c, rows, starts, durations)
        note = (f"Aggregated: {bars:,} bars are more than this page's limit of {budget:,} for this run, so each bar is "
                f"the mean client of a device class in a round ({rows.size:,} client sessions; hatched: one or more "
                "not ok). Drag to zoom; hover for the counts.")
    height = int(np.clip(110 + 20 * len(labels), 260, 900))
    axis = ({"tickvals": list(range(len(labels))), "ticktext": labels} if len(labels) <= TICKS
            else {"showticklabels": False})
    fig = figure("who did what when", "simulated time (s)", "", height=height, barmode="overlay",
                 yaxis={"autorange": "reversed", "automargin": True, **axis}, hovermode="closest")
    fig.add_traces(traces)
    return fig, note


def energy_figure(run: Run) -> go.Figure:
    """Fleet energy by device class and phase (compute, radio, idle), stacked."""
    c = run.clients
    names, cls = device_classes(c["device"], slice(None))
    fig = figure("energy by device class and phase", "device class", "energy (J)", barmode="stack")
    for (phase, column), colour in zip(ENERGY.items(), ENERGY_COLOURS):
        joules = np.bincount(cls, weights=c[column], minlength=names.size)
        fig.add_trace(go.Bar(name=phase, x=names.tolist(), y=f4(joules), marker={"color": colour}))
    return fig


def bytes_figure(run: Run) -> go.Figure:
    """Bytes up and down in each round (and over the backhaul, under hierarchical aggregation)."""
    r = run.rounds
    fig = figure("bytes per round", "round", "bytes", barmode="group")
    colours = {"bytes_up": PHASE_COLOURS[2], "bytes_down": PHASE_COLOURS[0]}  # as upload and download
    for column in ("bytes_up", "bytes_down", "backhaul_bytes_up", "backhaul_bytes_down"):
        if column in r:
            fig.add_trace(go.Bar(name=column.replace("_", " "), x=f4(r["round"]), y=f4(r[column]),
                                 marker={"color": colours.get(column)}))
    return fig


def topology_figures(run: Run) -> dict[str, go.Figure]:
    """A run on a topology (links.csv written): its graph - nodes by tier, the cloud on top, each
    link as wide as its capacity, each node's marker as large as the devices attached to it - and
    the bytes each link carried per round. Empty for a run without one."""
    fleet = (yaml.safe_load(run.scenario) or {}).get("fleet", {}) if run.links is not None else {}
    spec = fleet.get("network", {}).get("topology")
    if spec is None:
        return {}
    top = Topology(TopologySpec.model_validate(spec))
    attached = {name: 0 for name in spec["nodes"]}
    for group in fleet.get("groups", []):
        if group.get("attach") in attached:
            attached[group["attach"]] += group.get("count", 1)
    level = {kind: i for i, kind in enumerate((*TIERS, CLOUD))}
    order = sorted(spec["nodes"], key=lambda n: top.paths[n][::-1])  # each node under its parent, by name
    children: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        if len(top.paths[name]) > 1:
            children[top.paths[name][1]].append(name)
    leaves = [name for name in order if not children[name]]
    x = {name: (i + 0.5) / len(leaves) for i, name in enumerate(leaves)}
    for name in sorted(order, key=lambda n: -len(top.paths[n])):  # a parent over the middle of its children
        if children[name]:
            x[name] = sum(x[c] for c in children[name]) / len(children[name])
    xy = {name: (x[name], level[top.kind(name)]) for name in order}
    carried: dict[str, int] = {}
    for row in run.links:
        carried[row["link"]] = carried.get(row["link"], 0) + int(row["bytes_up"]) + int(row["bytes_down"])
    widest = max(link.up_mbps + link.down_mbps for link in top.spec.links)
    fig = figure("network topology (width: capacity; marker: devices attached)", "", "tier", height=380,
                 showlegend=False, xaxis={"visible": False},
                 yaxis={"title": {"text": "tier"}, "tickvals": list(level.values()), "ticktext": list(level),
                        "zeroline": False})
    for name, link in zip(top.link_names, top.spec.links):
        (xa, ya), (xb, yb) = xy[link.a], xy[link.b]
        fig.add_trace(go.Scatter(x=[xa, xb], y=[ya, yb], mode="lines", hoverinfo="text",
                                 line={"width": 1 + 9 * (link.up_mbps + link.down_mbps) / widest, "color": "#9ecae9"},
                                 text=f"{name}: up {link.up_mbps:g} / down {link.down_mbps:g} Mbps, "
                                      f"{link.latency_s * 1e3:g} ms; carried {carried.get(name, 0):,} bytes"))
    names = list(xy)
    fig.add_trace(go.Scatter(
        x=[xy[n][0] for n in names], y=[xy[n][1] for n in names], mode="markers+text", text=names,
        textposition="top center", customdata=[[top.kind(n), attached[n]] for n in names],
        marker={"size": [10 + 30 * (attached[n] / max(attached.values())) ** 0.5 if attached[n] else 10 for n in names],
                "color": [level[top.kind(n)] for n in names], "colorscale": "Viridis"},
        hovertemplate="%{text} (%{customdata[0]}): %{customdata[1]} devices attached<extra></extra>"))
    per_link = figure("bytes per link per round (up + down)", "round", "bytes")
    for name in top.link_names:
        rows = [row for row in run.links if row["link"] == name]
        per_link.add_trace(go.Scatter(x=f4([int(r["round"]) for r in rows]), mode="lines+markers", name=name,
                                      y=f4([int(r["bytes_up"]) + int(r["bytes_down"]) for r in rows])))
    return {"topology": fig, "links": per_link}


def pareto_figure(groups: dict[str, list[Path]]) -> tuple[go.Figure, list[str]]:
    """Mean time vs fleet energy to the target, a point per group, the Pareto front starred and
    joined; and the groups that never reached it."""
    figures = plots.mean_to_target(groups)
    reached = {label: pair for label, pair in figures.items() if pair is not None}
    front = plots.pareto_front(reached)
    fig = figure("time vs energy to target", "simulated time to target (s)", "fleet energy to target (J)",
                 showlegend=False)
    fig.add_trace(go.Scatter(x=[reached[k][0] for k in front], y=[reached[k][1] for k in front], mode="lines",
                             line={"dash": "dot", "color": "grey"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[t for t, _ in reached.values()], y=[e for _, e in reached.values()], mode="markers",
                             text=list(reached), marker={"size": 11, "symbol": ["star" if k in front else "circle"
                                                                                for k in reached]},
                             hovertemplate="%{text}<br>%{x:.4g} s, %{y:.4~s}J<extra></extra>"))
    return fig, [label for label, pair in figures.items() if pair is None]


# -- the page --------------------------------------------------------------------------------
def si(value, unit: str) -> str:
    """A figure with an SI prefix and 3 significant digits (1.18 kJ, 95.5 kB); a dash for none."""
    return docgen.si(value, unit, ".3g", "–")


def card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{html.escape(key)}</div><div class="v">{html.escape(value)}</div>'
            f'<div class="s">{html.escape(sub)}</div></div>')


def cards(summary: dict) -> str:
    """The summary: accuracies, the figures to target beside the whole run's, client sessions by
    status and the excluded devices with their reasons."""
    totals, target = summary.get("totals", {}), summary.get("target_accuracy")
    accuracy = lambda key: "–" if summary.get(key) is None else f"{summary[key]:.3f}"  # noqa: E731
    missed = "no target" if target is None else "not reached"
    to_target = lambda key, unit: missed if summary.get(key) is None else si(summary[key], unit)  # noqa: E731
    reached = "" if summary.get("rounds_to_target") is None else f"round {summary['rounds_to_target']}, "
    excluded = summary.get("excluded") or []
    return '<div class="cards">' + "".join([
        card("final accuracy", accuracy("final_accuracy"), f"round 0: {accuracy('initial_accuracy')}"),
        card("best accuracy", accuracy("best_accuracy"), "" if target is None else f"target {target:g}"),
        card("time to target", to_target("time_to_target_s", "s"), f"{reached}of {si(totals.get('sim_time_s'), 's')}"),
        card("energy to target", to_target("energy_to_target_j", "J"), f"of {si(totals.get('energy_j'), 'J')}"),
        card("bytes to target", to_target("bytes_to_target", "B"),
             f"of {si(totals.get('bytes_up', 0) + totals.get('bytes_down', 0), 'B')}"),
        card("client FLOPs to target", to_target("client_flops_to_target", "FLOP"),
             f"of {si(totals.get('client_flops'), 'FLOP')}"),
        card("client sessions", f"{sum(totals.get('client_rounds', {}).values()):,}",
             ", ".join(f"{k} {v:,}" for k, v in sorted(totals.get("client_rounds", {}).items()))),
        card("excluded devices", f"{sum(e.get('count', 0) for e in excluded):,}",
             "; ".join(f"{e.get('device')} x{e.get('count')}: needs {e.get('needs_bytes', 0) / 1e9:.2f} GB, has "
                       f"{e.get('usable_bytes', 0) / 1e9:.2f} GB" for e in excluded) or "none"),
    ]) + "</div>"


def chart(div_id: str, note: str = "") -> str:
    return f'<div class="chart" id="{div_id}"></div>' + (f'<p class="note">{html.escape(note)}</p>' if note else "")


def text_block(title: str, text: str) -> str:
    return f'<details class="text"><summary>{title}</summary><pre>{html.escape(text)}</pre></details>'


def run_section(i: int, run: Run, budget: int, with_cards: bool) -> tuple[str, dict[str, go.Figure]]:
    """A run's cards (a page of one run has them at its top), timeline, energy and bytes charts,
    scenario and provenance, in a section that is open for the first run; the others draw their
    charts when opened."""
    fig, note = timeline(run, budget)
    charts = {f"run{i}-timeline": fig, f"run{i}-energy": energy_figure(run), f"run{i}-bytes": bytes_figure(run)}
    network = {f"run{i}-{name}": fig for name, fig in topology_figures(run).items()}
    charts.update(network)
    provenance = "(not recorded)" if run.provenance is None else json.dumps(run.provenance, indent=2, sort_keys=True)
    body = ((cards(run.summary) if with_cards else "") + chart(f"run{i}-timeline", note)
            + f'<div class="grid">{chart(f"run{i}-energy")}{chart(f"run{i}-bytes")}</div>'
            + (f'<div class="grid">{"".join(chart(key) for key in network)}</div>' if network else "")
            + text_block("resolved scenario (scenario.yaml)", run.scenario or "(not recorded)")
            + text_block("provenance (provenance.json)", provenance))
    label = "" if run.label == run.dir.name else html.escape(run.label)
    summary = (f'<summary title="{html.escape(str(run.dir))}">{html.escape(run.dir.name)} '
               f'<span class="label" title="{label}">{label}</span></summary>')
    section = f'<details class="run" id="run{i}"{" open" if i == 0 else ""}>{summary}{body}</details>'
    return section, charts


def sweep_table(rows: list[dict]) -> str:
    """A sweep's grid: its parameters and main figures per point, sortable by any column."""
    done = [row for row in rows if row.get("status") == "done"] or rows
    columns = ["point", *plots.sweep_parameters(done), *(c for c in SWEEP_FIGURES if c in rows[0])]
    return table(columns, [[row.get(c) or "" for c in columns] for row in rows])


def table(columns: list[str], rows: list[list]) -> str:
    """A sortable table; a cell that reads as a number sorts as one and shows 4 significant digits."""
    def cell(value) -> str:
        value = "" if value is None else str(value)
        try:
            return f'<td data-v="{html.escape(value)}">{float(value):,.4g}</td>'
        except ValueError:
            return f"<td>{html.escape(value)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def report_html(paths: list[Path]) -> str:
    """The page for ``paths`` (run directories and sweep folders)."""
    runs, groups, sweeps = gather(paths)
    charts = accuracy_figures(groups)
    names = ", ".join(p.name or str(p) for p in paths)
    parts = [f"<h1>edgefed report: {html.escape(names)}</h1>",
             f'<p class="lead">{len(runs)} run{"s" if len(runs) > 1 else ""} from '
             f'{html.escape(", ".join(map(str, paths)))}. Simulated time, energy and bytes come from the '
             "discrete-event model; accuracy from the real learning.</p>"]
    if len(runs) == 1:
        parts.append(cards(runs[0].summary))
    parts += ["<h2>Accuracy</h2>", '<div class="grid">' + "".join(chart(k) for k in charts) + "</div>"]
    if sweeps:
        charts["pareto"], missed = pareto_figure(groups)
        parts.append("<h2>Sweep</h2>")
        parts += [f"<h3>{html.escape(str(path))}</h3>{sweep_table(rows)}" for path, rows in sweeps.items()]
        parts.append(chart("pareto", "Never reached the target: " + "; ".join(map(short, missed)) if missed else ""))
    parts.append("<h2>Runs</h2>" if len(runs) > 1 else "<h2>Run</h2>")
    for i, run in enumerate(runs):
        section, figures = run_section(i, run, MAX_BARS // len(runs), with_cards=len(runs) > 1)
        parts.append(section)
        charts.update(figures)
    return page(f"edgefed report: {names}", parts, charts)


def page(title: str, parts: list[str], charts: dict[str, go.Figure]) -> str:
    """The self-contained page: ``parts`` (HTML) with ``charts`` drawn into their divs."""
    data = "{" + ",".join(f"{json.dumps(k)}:{pio.to_json(fig, validate=False, engine='json')}"
                          for k, fig in charts.items()) + "}"
    template = Template((files("edgefed") / "report_page.html").read_text(encoding="utf-8"))
    return template.substitute(title=html.escape(title), plotlyjs=get_plotlyjs(), body="\n".join(parts), figures=data)


def comparison_html(result: dict) -> str:
    """A comparison's page (``edgefed compare``'s report.html, from compare.json's figures): the
    result sentences, accuracy against the cost per pick with a band over seeds, the paired
    differences with their intervals, the collapse rates and the tuning table."""
    from edgefed.protocol import cost_unit, format_cost

    fmt = lambda v: format_cost(v, result["cost"])  # noqa: E731
    size, unit = cost_unit(result["budget"], result["cost"])
    scale = 1.0 / size
    fig = figure(f"smoothed test accuracy vs {unit} (each arm's pick; band: min to max over seeds)",
                 unit, "smoothed test accuracy", height=420)
    for i, (label, by_seed) in enumerate(result["curves"].items()):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        rows = [[p for p in points if p[3] is not None] for points in by_seed.values()]
        xs = sorted({p[0] for points in rows for p in points})
        at = [[p[3] for points in rows for p in points if p[0] == x] for x in xs]
        x = f4(np.array(xs) * scale)
        fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=f4([max(v) for v in at] + [min(v) for v in at][::-1]),
                                 fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0}, hoverinfo="skip",
                                 legendgroup=label, showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=f4([sum(v) / len(v) for v in at]), name=f"{label} (mean of {len(rows)} seeds)",
                                 legendgroup=label, mode="lines+markers", line={"color": colour}, marker={"size": 5}))
    ref, collapse = result["reference"], result["collapse"]
    number = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    paired_rows = [[fmt(e["at"]), label, number(a["mean"]), f"{number(a['low'])} to {number(a['high'])}",
                    a["verdict"], f"{collapse[label]['collapsed']}/{collapse[label]['runs']}",
                    f"{collapse[ref]['collapsed']}/{collapse[ref]['runs']}", "primary" if e["primary"] else "descriptive"]
                   for e in result["checkpoints"]["registered"] for label, a in e["arms"].items()]
    tuning_rows = [[label, row["configuration"], row["pruning_score"], "yes" if row["survived"] else "no",
                    row.get("score"), "pick" if row["config"] == t["pick"] else ""]
                   for label, t in result["tuning"].items() for row in t["rows"]]
    parts = [f"<h1>edgefed compare: {html.escape(result['name'])}</h1>",
             "".join(f'<p class="lead">{html.escape(s)}</p>' for s in result["sentences"]),
             "".join(f'<p class="note">{html.escape(c)}</p>' for c in result["caveats"]),
             f'<p class="note">{html.escape(" ".join(result["notes"]))}</p>',
             "<h2>Accuracy at equal cost</h2>", chart("compare-accuracy"),
             f"<h2>Paired differences from {html.escape(ref)}</h2>",
             table(["at", "arm", "mean", "95% t-interval", "verdict", "arm collapsed", "reference collapsed", "role"],
                   paired_rows),
             "<h2>What the picks spent (mean over report seeds)</h2>",
             table(["arm", "collapsed", "client TFLOP", "energy (kJ)", "simulated time (s)", "MB up and down",
                    "peak memory (MB)"],
                   [[label, f"{collapse[label]['collapsed']}/{collapse[label]['runs']}", s["client_flops"] / 1e12,
                     s["energy_j"] / 1e3, s["sim_time_s"], s["bytes"] / 1e6, s["peak_memory_bytes"] / 1e6]
                    for label, s in result["spent"].items()]),
             "<h2>Tuning (successive halving, scored at the full budget)</h2>",
             table(["arm", "configuration", "pruning score", "survived", "score", "pick"], tuning_rows)]
    return page(f"edgefed compare: {result['name']}", parts, {"compare-accuracy": fig})


def write_report(paths: list[Path], out: Path) -> None:
    """Write the page for ``paths`` to ``out`` atomically."""
    atomic_write(out, report_html(paths))
