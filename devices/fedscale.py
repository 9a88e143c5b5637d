"""FedScale's device traces as a population CSV (``edgefed convert-fedscale``), read without
unpickling arbitrary objects.

FedScale (SymbioticLab/FedScale, benchmark/dataset/data/device_info/README.md) ships two pickled
dictionaries keyed by client id:

- ``client_device_capacity``: ``{id: {'computation': float, 'communication': float}}``. Its
  reader (fedscale/cloud/internal/client_metadata.py, ``get_completion_time``) takes
  ``computation`` as milliseconds of inference per sample (training costs 3x that) and
  ``communication`` as the bandwidth that a size in kbit (bytes / 1024 x 8, aggregator.py) is
  divided by, so kbit/s with 1 kbit = 1024 bits; one rate for both directions.
- ``client_behave_trace``: ``{id: {'duration': int, 'inactive': [int], 'finish_time': int,
  'active': [int], 'model': str}}``; ``is_active`` has a client on from ``active[i]`` to
  ``inactive[i]`` seconds, repeating every ``finish_time`` seconds.

A row's FLOP/s is ``sample_flops / (computation / 1000)``: what the trace does not say is which
model's inference it timed, so ``sample_flops`` is an input (default: MobileNet-V2, 300 M
multiply-adds = 0.6 GFLOP, Sandler et al. 2018; ESTIMATE). FedScale's traces give no memory, so
every row gets ``memory_bytes``. Behaviour is joined to capacity by client id (FedScale pairs the
two by position modulo their lengths, which mixes clients; issues #163/#164), and its periodic
windows are unrolled over ``horizon_s`` of simulated time.

``restricted_load`` never builds an object other than the builtin containers and scalars pickle
writes inline: any class, function or module reference in the stream is refused.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import pickle
from pathlib import Path

MAX_BYTES = 512 * 2**20  # FedScale's shipped traces are tens of MB
DEFAULT_SAMPLE_FLOPS = 6e8
DEFAULT_MEMORY_BYTES = 3.5e9  # the catalog's usable memory for an 8 GB Android phone
DEFAULT_HORIZON_S = 7 * 86400.0
KBIT_MBPS = 1024 / 1e6


class TraceError(ValueError):
    """Bad trace input; ``str()`` is one line naming the file and the client or field."""


class Refused(pickle.UnpicklingError):
    """The stream names something that is not a builtin container or number."""


class RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, sets, strings, bytes, numbers, booleans and None; anything
    that pickle would look up by name (a class, a function) is refused."""

    SAFE = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset}  # protocols < 4 name them

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return self.SAFE[module, name]
        raise Refused(f"refuses to load {module}.{name} (only builtin containers and numbers are read)")

    def persistent_load(self, pid):
        raise Refused("refuses a persistent reference (only builtin containers and numbers are read)")


def restricted_load(path: Path, limit: int = MAX_BYTES):
    """The pickle at ``path`` through ``RestrictedUnpickler``, refused above ``limit`` bytes."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise TraceError(f"{path}: {size:,} bytes, more than the {limit:,} this reader accepts")
        data = path.read_bytes()
    except FileNotFoundError:
        raise TraceError(f"{path}: file not found") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except Refused as exc:
        raise TraceError(f"{path}: {exc}") from None
    except Exception as exc:  # a truncated or corrupt stream: UnpicklingError, EOFError, ValueError, ...
        raise TraceError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def number(path: Path, client, field: str, value, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise TraceError(f"{path}: client {client!r}: {field}: {value!r} is not a {kind} number")
    return float(value)


def entries(path: Path, data, fields: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise TraceError(f"{path}: expected a dict of clients, got {type(data).__name__}")
    for client, entry in data.items():
        if not isinstance(entry, dict):
            raise TraceError(f"{path}: client {client!r}: expected a dict, got {type(entry).__name__}")
        for field in fields:
            if field not in entry:
                raise TraceError(f"{path}: client {client!r}: missing field {field!r}")
    return data


def unrolled_windows(path: Path, client, entry: dict, horizon_s: float) -> list[tuple[float, float]]:
    """A client's on windows (``active[i]``..``inactive[i]`` every ``finish_time``) up to the horizon."""
    period = number(path, client, "finish_time", entry["finish_time"])
    active, inactive = entry["active"], entry["inactive"]
    if not isinstance(active, (list, tuple)) or not isinstance(inactive, (list, tuple)) or len(active) != len(inactive):
        raise TraceError(f"{path}: client {client!r}: active, inactive: expected two lists of the same length")
    pairs = []
    for a, b in zip(active, inactive):
        a, b = number(path, client, "active", a, False), number(path, client, "inactive", b, False)
        if not a <= b <= period:
            raise TraceError(f"{path}: client {client!r}: active..inactive: {a:g}..{b:g} is not within 0..finish_time "
                             f"({period:g})")
        pairs.append((a, b))
    windows: list[list[float]] = []
    start = 0.0
    while start < horizon_s:
        for a, b in sorted(pairs):
            s, e = start + a, min(start + b, horizon_s)
            if s >= e:
                continue
            if windows and s <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], e)
            else:
                windows.append([s, e])
        start += period
    return [(s, e) for s, e in windows]


def convert(capacity: Path, behaviour: Path | None, out: Path, sample_flops: float = DEFAULT_SAMPLE_FLOPS,
            memory_bytes: float = DEFAULT_MEMORY_BYTES, horizon_s: float = DEFAULT_HORIZON_S) -> dict:
    """Write the population CSV; returns what it wrote: rows, rows with windows, clients left out
    as never on within the horizon, ids only in the behaviour trace."""
    for name, value in (("--sample-flops", sample_flops), ("--memory-bytes", memory_bytes), ("--horizon-s", horizon_s)):
        if not (math.isfinite(value) and value > 0):
            raise TraceError(f"{name}: must be a positive number (got {value:g})")
    cap = entries(capacity, restricted_load(capacity), ("computation", "communication"))
    behave = entries(behaviour, restricted_load(behaviour), ("active", "inactive", "finish_time")) if behaviour else {}
    if not cap:
        raise TraceError(f"{capacity}: no clients")
    lines = ["# edgefed population from FedScale device traces (edgefed convert-fedscale): one row per client",
             f"# capacity: {capacity.name} sha256 {sha256(capacity)}",
             *([f"# behaviour: {behaviour.name} sha256 {sha256(behaviour)}, joined by client id, windows "
                f"unrolled over {horizon_s:g} s"] if behaviour else []),
             f"# flops = {sample_flops:g} FLOP per sample / (computation ms / 1000); up_mbps = down_mbps = "
             f"communication kbit/s x 1024 / 1e6; memory_bytes = {memory_bytes:g} for every client "
             "(FedScale gives none)"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "flops", "memory_bytes", "up_mbps", "down_mbps", "windows"])
    with_windows = never_on = 0
    for client, entry in cap.items():
        ms = number(capacity, client, "computation", entry["computation"])
        mbps = number(capacity, client, "communication", entry["communication"]) * KBIT_MBPS
        name, windows = f"client {client}", ""
        if client in behave:
            model = behave[client].get("model")
            if isinstance(model, str) and model.strip():
                name += f" ({' '.join(model.split())})"
            spans = unrolled_windows(behaviour, client, behave[client], horizon_s)
            if not spans:  # never on within the horizon: no device of the fleet
                never_on += 1
                continue
            windows = ";".join(f"{seconds(s)}-{seconds(e)}" for s, e in spans)
            with_windows += 1
        writer.writerow([name, f"{sample_flops / (ms / 1000):.9g}", f"{memory_bytes:.9g}", f"{mbps:.9g}",
                         f"{mbps:.9g}", windows])
    if never_on == len(cap):
        raise TraceError(f"{behaviour}: no client is on within --horizon-s {horizon_s:g}")
    try:
        out.write_text("\n".join(lines) + "\n" + buffer.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{out}: cannot write: {exc.strerror}") from None
    return {"rows": len(cap) - never_on, "with_windows": with_windows, "never_on": never_on,
            "behaviour_only": sum(1 for client in behave if client not in cap)}


def seconds(value: float) -> str:
    """Fixed-point (an exponent's '-' would read as the window's separator)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
