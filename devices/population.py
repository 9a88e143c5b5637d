"""Measured device populations: a fleet group whose devices each draw their own compute, memory and
bandwidth (``fleet.groups.<i>.population``), from a shipped population or a CSV of your own.

``flash-phones`` (``populations/flash-phones.yaml``) is FLASH's AI-Benchmark list of 333 phone
models and its 19 measured users' bandwidths (the files themselves, verbatim, are in
``populations/flash/`` with their licence and provenance). A phone's sustained FLOP/s is linear in
its AI-Benchmark CPU float score, fitted to reference SoCs whose FLOP/s the catalog's spec rule
gives (``fit``); its usable memory follows the catalog's rule for Android phones from its RAM.

A CSV population is one row per device (``CSV_COLUMNS``): its FLOP/s, usable memory, up and down
Mbps, and optionally a name and availability windows, kept together on the row, so a device's
speed, memory and availability are never paired at random.

Each drawn device is one entry of the fleet's arrays; the drawn devices of one population row share
one ``DeviceProfile`` (the group's ``like`` device with that row's FLOP/s and memory, and, where
``like`` is a phone, the active power that its FLOP/s gives, ``power_fit``), so the engine
sees ordinary device groups. Every draw comes from ``Stream.POPULATION`` keyed by the group's
index, so the same scenario and seed draw the same devices.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from edgefed.devices.profile import DeviceProfile, default_catalog
from edgefed.streams import Stream, rng

POPULATIONS_DIR = Path(__file__).with_name("populations")
BUILTIN = ("flash-phones",)
DEFAULT_LIKE = "budget-phone"
CSV_COLUMNS = {
    "flops": "sustained fp32 FLOP/s of the device (> 0)",
    "memory_bytes": "memory the training process can use, bytes (> 0)",
    "up_mbps": "uplink rate, Mbps (> 0)",
    "down_mbps": "downlink rate, Mbps (> 0)",
    "name": "optional: a label (records name the device by it); default `row N`",
    "windows": "optional: when the device is on, `start_s-end_s` pairs in simulated seconds separated by `;` "
               "(0 <= start_s < end_s; empty: always on); needs fleet.availability.kind always or trace",
}
REQUIRED = ("flops", "memory_bytes", "up_mbps", "down_mbps")


class PopulationError(ValueError):
    """Bad population input; ``str()`` is one line naming the file and row or field."""


@dataclass(frozen=True)
class Reference:
    """A reference SoC of the score -> FLOP/s fit."""

    soc: str
    phones: int  # rows of the list with this SoC
    score: float  # their median CPU float score
    flops: float  # FLOP/s by the catalog's spec rule
    fitted: float  # FLOP/s the fit gives at ``score``
    source: str

    @property
    def residual(self) -> float:
        """Relative residual of the fit, (fitted - spec) / spec."""
        return (self.fitted - self.flops) / self.flops


@dataclass(frozen=True)
class Fit:
    """FLOP/s = slope x score + intercept from ``min_score`` up; below it, in proportion to the score."""

    slope: float
    intercept: float
    min_score: float
    references: tuple[Reference, ...]

    def flops(self, score: np.ndarray) -> np.ndarray:
        score = np.asarray(score, dtype=float)
        linear = self.slope * score + self.intercept
        at_min = self.slope * self.min_score + self.intercept
        return np.where(score >= self.min_score, linear, at_min * score / self.min_score)


@dataclass(frozen=True)
class PowerFit:
    """ESTIMATE: a drawn phone's compute energy above idle per GFLOP, from its FLOP/s: a line in
    log-log, ``log(J/GFLOP) = intercept + slope * log(GFLOP/s)``, least squares over the catalog's
    phones (``power_active_w - power_idle_w`` over their fp32 GFLOP/s), its value clamped to the
    range those phones span. Fitted above idle, so a drawn phone's active power,
    ``power_idle_w + J/GFLOP x GFLOP/s``, never falls below its idle power however slow it is."""

    slope: float
    intercept: float
    low: float  # J/GFLOP, the phones' lowest
    high: float  # and highest
    phones: tuple[tuple[str, float, float], ...]  # (name, GFLOP/s, J/GFLOP above idle) of each phone

    def j_per_gflop(self, gflops):
        """Compute joules above idle per GFLOP at ``gflops`` GFLOP/s, clamped to the phones' range."""
        return np.clip(np.exp(self.intercept + self.slope * np.log(gflops)), self.low, self.high)

    def power_active_w(self, flops: float, idle_w: float) -> float:
        """Whole-device power computing at ``flops`` FLOP/s: idle plus the fitted increment."""
        return float(idle_w + self.j_per_gflop(flops / 1e9) * flops / 1e9)

    def residuals(self) -> dict[str, float]:
        """Each phone's relative residual of the line (unclamped) in J/GFLOP above idle,
        (fitted - catalog) / catalog."""
        return {name: float(np.exp(self.intercept + self.slope * np.log(g)) / j - 1.0) for name, g, j in self.phones}


@cache
def power_fit() -> PowerFit:
    """The fit over the default catalog's phones (``PowerFit``): the one place a drawn phone's power
    comes from."""
    phones = tuple((name, d.flops["fp32"] / 1e9, (d.power_active_w - d.power_idle_w) / (d.flops["fp32"] / 1e9))
                   for name, d in default_catalog().devices.items() if d.device_class == "phone")
    x, y = np.log([g for _, g, _ in phones]), np.log([j for _, _, j in phones])
    slope, intercept = np.polyfit(x, y, 1)
    return PowerFit(float(slope), float(intercept), min(j for *_, j in phones), max(j for *_, j in phones), phones)


@dataclass
class Drawn:
    """One fleet group's drawn devices: ``which[k]`` indexes ``profiles`` for the group's device k."""

    profiles: list[DeviceProfile]
    which: np.ndarray
    up_mbps: np.ndarray
    down_mbps: np.ndarray
    windows: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # device k -> on intervals


@dataclass
class Population:
    """Device rows (name, FLOP/s, usable memory) and how their bandwidth is drawn: per user from
    ``rate_mean``/``rate_sigma`` (Mbps, [up, down] per measured user), or per row (``up``/``down``,
    a CSV: one row per device)."""

    name: str
    source: str
    description: str
    names: list[str]
    flops: np.ndarray
    memory: np.ndarray
    sources: dict[str, str]
    rate_mean: np.ndarray | None = None
    rate_sigma: np.ndarray | None = None
    up: np.ndarray | None = None
    down: np.ndarray | None = None
    windows: list[list[tuple[float, float]]] | None = None
    fit: Fit | None = None

    @property
    def per_row(self) -> bool:
        """A CSV: each device is one row, drawn without replacement."""
        return self.up is not None

    def __len__(self) -> int:
        return len(self.names)

    def draw(self, count: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows and up/down Mbps of ``count`` devices. A shipped population draws rows uniformly
        with replacement and, independently, a measured user per device and one rate from that
        user's normal distribution (redrawn until positive). A CSV takes every row in order when
        ``count`` is its length, else a uniform sample of ``count`` rows, kept in file order."""
        if self.per_row:
            rows = np.arange(count) if count == len(self) else np.sort(gen.choice(len(self), count, replace=False))
            return rows, self.up[rows], self.down[rows]
        rows = gen.integers(len(self), size=count)
        user = gen.integers(len(self.rate_mean), size=count)
        rates = positive_normal(gen, self.rate_mean[user], self.rate_sigma[user])
        return rows, rates[:, 0], rates[:, 1]

    def profile(self, row: int, like: DeviceProfile) -> DeviceProfile:
        """Row ``row`` as a device: ``like`` with the row's FLOP/s (fp32 only) and usable memory,
        and, where ``like`` is a phone, the active power that the catalog's phones give its
        FLOP/s (``power_fit``); any other ``like`` keeps its own power."""
        flops = float(self.flops[row])
        update = {"name": f"{self.name}:{self.names[row]}",
                  "description": f"{self.names[row]}, drawn from {self.name}; other figures of {like.name}",
                  "flops": {"fp32": flops}, "memory_bytes": float(self.memory[row])}
        sources = {**self.sources, "like": f"power, battery, thermal, memory bandwidth, link: {like.name}"}
        if like.device_class == "phone":
            fit = power_fit()
            update["power_active_w"] = fit.power_active_w(flops, like.power_idle_w)
            sources["power_active_w"] = (
                f"ESTIMATE: {like.name}'s idle power plus {fit.j_per_gflop(flops / 1e9):.4f} J per GFLOP above idle, "
                "from a log-log fit of J/GFLOP above idle against FLOP/s over the catalog's phones, clamped to their "
                "range (devices/population.py power_fit)")
            sources["like"] = f"idle power, battery, thermal, memory bandwidth, link: {like.name}"
        return like.model_copy(update={**update, "sources": sources})


def positive_normal(gen: np.random.Generator, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Normal draws, each redrawn until positive (as FLASH does per transfer)."""
    out = gen.normal(mean, sigma)
    for _ in range(1000):
        bad = out <= 0
        if not bad.any():
            return out
        out[bad] = gen.normal(mean[bad], sigma[bad])
    return np.maximum(out, mean * 1e-3)  # never reached for FLASH's users (at worst 16% land below zero)


# --- the shipped population --------------------------------------------------------------------

def spec_flops(clusters: list, utilisation: float) -> float:
    """The catalog's spec rule: sum of cores x GHz x fp32 FLOP/cycle, x utilisation."""
    return math.fsum(n * ghz * 1e9 * per_cycle for n, ghz, per_cycle in clusters) * utilisation


def fit_references(spec: dict, rows: list[dict]) -> Fit:
    """Least squares of spec FLOP/s on the median score of each reference SoC's phones."""
    refs = []
    for soc, entry in spec["references"].items():
        scores = sorted(float(r[spec["score_field"]]) for r in rows if r["CPU"].strip() == soc)
        if not scores:
            raise ValueError(f"reference SoC {soc!r} has no phone in the list")
        refs.append((soc, len(scores), float(np.median(scores)), spec_flops(entry["clusters"], spec["utilisation"]),
                     entry["source"]))
    x, y = [r[2] for r in refs], [r[3] for r in refs]
    mx, my = math.fsum(x) / len(x), math.fsum(y) / len(y)
    slope = math.fsum((a - mx) * (b - my) for a, b in zip(x, y)) / math.fsum((a - mx) ** 2 for a in x)
    intercept = my - slope * mx
    references = tuple(Reference(soc, n, s, f, slope * s + intercept, src) for soc, n, s, f, src in refs)
    return Fit(slope, intercept, min(x), references)


def ram_bytes(text: str) -> float:
    """``8GB`` -> 8e9 (decimal, as the catalog counts a phone's RAM)."""
    return float(text.strip().removesuffix("GB")) * 1e9


def usable_memory(ram: np.ndarray, rule: dict) -> np.ndarray:
    return np.maximum(rule["slope"] * ram + rule["offset_bytes"], rule["floor_fraction"] * ram)


def unique_names(names: list[str]) -> list[str]:
    """Repeated names get ``#2``, ``#3``... (the list has regional variants and repeated runs)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


@cache
def builtin(name: str) -> Population:
    path = POPULATIONS_DIR / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    rows = json.loads((POPULATIONS_DIR / spec["devices_file"]).read_text())
    fit = fit_references(spec, rows)
    speeds = json.loads((POPULATIONS_DIR / spec["bandwidth_file"]).read_text())
    unit = spec["bandwidth_mbps_per_unit"]
    names = unique_names([f"{r['Model'].strip()} ({r['CPU'].strip()}, {r['RAM'].strip()}, {r['Year'].strip()})"
                          for r in rows])
    return Population(
        name=name, source=f"devices/populations/{name}.yaml", description=spec["description"], names=names,
        flops=fit.flops([float(r[spec["score_field"]]) for r in rows]),
        memory=usable_memory(np.array([ram_bytes(r["RAM"]) for r in rows]), spec["memory"]),
        sources={k: spec["sources"][k] for k in ("flops", "memory_bytes")},
        rate_mean=np.array([[s["up_u"], s["down_u"]] for s in speeds.values()]) * unit,
        rate_sigma=np.array([[s["up_sigma"], s["down_sigma"]] for s in speeds.values()]) * unit,
        fit=fit)


@cache
def builtin_spec(name: str) -> dict:
    """The population's YAML (its sources and defaults), for the documentation."""
    return yaml.safe_load((POPULATIONS_DIR / f"{name}.yaml").read_text())


# --- a CSV of your own -------------------------------------------------------------------------

def parse_windows(text: str) -> list[tuple[float, float]]:
    windows = []
    for part in text.split(";"):
        if not part.strip():
            continue
        start, sep, end = part.strip().partition("-")
        if not sep:
            raise ValueError
        s, e = float(start), float(end)
        if not (math.isfinite(s) and math.isfinite(e) and 0 <= s < e):
            raise ValueError
        windows.append((s, e))
    windows.sort()
    if any(s1 < e0 for (_, e0), (s1, _) in zip(windows, windows[1:])):
        raise ValueError
    return windows


def csv_header(path: Path, line: int, head: str) -> list[str]:
    """The header's columns: known ones, each once, every required one present."""
    header = [h.strip() for h in next(csv.reader([head]))]
    for column in header:
        if column not in CSV_COLUMNS:
            raise PopulationError(f"{path}: row {line}: unknown column {column!r} (columns: {', '.join(CSV_COLUMNS)})")
        if header.count(column) > 1:
            raise PopulationError(f"{path}: row {line}: column {column!r} given twice")
    for column in REQUIRED:
        if column not in header:
            raise PopulationError(f"{path}: row {line}: missing column {column!r} "
                                  f"(needs {', '.join(REQUIRED)}; optional name, windows)")
    return header


def positive(path: Path, line: int, column: str, cell: str) -> float:
    """A cell that must be a finite number above 0 (a rate, a size)."""
    try:
        value = float(cell)
    except ValueError:
        raise PopulationError(f"{path}: row {line}: {column}: {cell!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        what = "negative" if value < 0 else "zero" if value == 0 else "not finite"
        raise PopulationError(f"{path}: row {line}: {column}: {cell} is {what} (must be > 0)")
    return value


def read_csv(path: Path) -> Population:
    """One row per device (``CSV_COLUMNS``; lines starting with # are comments). Raises
    PopulationError naming the file and the row (its line number) or column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PopulationError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PopulationError(f"{path}: cannot read: {exc}") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise PopulationError(f"{path}: no header line (needs columns {', '.join(REQUIRED)})")
    head_line, head = lines[0]
    header = csv_header(path, head_line, head)
    values: dict[str, list[float]] = {c: [] for c in REQUIRED}
    names, windows = [], []
    for n, line in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) != len(header):
            raise PopulationError(f"{path}: row {n}: {len(cells)} fields, the header has {len(header)}")
        row = dict(zip(header, cells))
        for column in REQUIRED:
            values[column].append(positive(path, n, column, row[column]))
        names.append(row.get("name") or f"row {n}")
        try:
            windows.append(parse_windows(row.get("windows", "")))
        except ValueError:
            raise PopulationError(f"{path}: row {n}: windows: expected start_s-end_s pairs separated by ';', "
                                  f"0 <= start_s < end_s, not overlapping (got {row['windows']!r})") from None
    if not names:
        raise PopulationError(f"{path}: no devices (one row per device after the header)")
    return Population(
        name=path.stem, source=str(path), description=f"a row of {path.name}", names=unique_names(names),
        flops=np.array(values["flops"]), memory=np.array(values["memory_bytes"]),
        sources={"flops": f"{path}: flops", "memory_bytes": f"{path}: memory_bytes"},
        up=np.array(values["up_mbps"]), down=np.array(values["down_mbps"]),
        windows=windows if any(windows) else None)


def load_population(spec: str, base: Path) -> Population:
    """A shipped population by name, or a CSV file (relative to ``base``)."""
    if spec in BUILTIN:
        return builtin(spec)
    if spec.endswith(".csv"):
        path = Path(spec).expanduser()
        return read_csv(path if path.is_absolute() else base / path)
    raise PopulationError(f"unknown population {spec!r} (known: {', '.join(BUILTIN)}, or a FILE.csv of devices)")


def is_known(spec: str) -> bool:
    return spec in BUILTIN or spec.endswith(".csv")


# --- a fleet's draws ---------------------------------------------------------------------------

def draw_group(population: Population, count: int, seed: int, index: int, like: DeviceProfile) -> Drawn:
    """The ``count`` devices of fleet group ``index``: one profile per population row drawn."""
    rows, up, down = population.draw(count, rng(seed, Stream.POPULATION, index))
    used, which = np.unique(rows, return_inverse=True)
    windows = {}
    if population.windows is not None:
        windows = {k: population.windows[r] for k, r in enumerate(rows.tolist()) if population.windows[r]}
    return Drawn([population.profile(int(r), like) for r in used], which.astype(np.int32), up.astype(float),
                 down.astype(float), windows)


def draw_fleet(fleet, seed: int, base: Path) -> dict[int, Drawn]:
    """Every population group of a ``FleetSpec``, by group index. Raises PopulationError naming
    the group's dotted field."""
    devices, _ = fleet.profiles()
    out = {}
    for i, group in enumerate(fleet.groups):
        if group.population is None:
            continue
        try:
            population = load_population(group.population, base)
        except PopulationError as exc:
            raise PopulationError(f"fleet.groups.{i}.population: {exc}") from None
        if population.per_row and group.count > len(population):
            raise PopulationError(f"fleet.groups.{i}.count: {group.count} exceeds the {len(population)} devices "
                                  f"(one per row) of {population.source}")
        drawn = draw_group(population, group.count, seed, i, devices[fleet.template_name(group)])
        if drawn.windows and fleet.availability.kind not in ("always", "trace"):
            raise PopulationError(f"fleet.groups.{i}.population: {population.source} gives availability windows, "
                                  f"which need fleet.availability.kind always or trace (got {fleet.availability.kind})")
        out[i] = drawn
    return out


QUANTILES = (("min", 0.0), ("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("max", 1.0))


def quantiles(values: np.ndarray) -> dict[str, float]:
    return {name: float(np.quantile(values, q)) for name, q in QUANTILES}
