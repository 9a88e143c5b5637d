"""Where a result came from: code version, machine, and the exact bytes of every input it read.

One place for what run directories (``provenance.json``) and benchmark results (a ``provenance``
block) record, so a figure can be traced to the commit, the data file contents and the model
weights that made it. File hashes are cached per (path, size, mtime), so a run does not rehash a
90 MB model every time.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from edgefed.devices.profile import host_cpu
from edgefed.results import atomic_write

PROVENANCE = "provenance.json"
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository root when run from a clone
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
HASH_CACHE_FORMAT = "edgefed-sha256-cache/1"
CODE_PATHS = ("edgefed", "simulator", "algorithms", "devices")  # the checkout folders that are the package


def versions() -> dict:
    """Python and the versions of the packages that decide a run's numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("edgefed", "torch", "transformers", "simpy", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git(*args: str, root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code(root: Path = CHECKOUT, paths: tuple[str, ...] = CODE_PATHS) -> dict:
    """The edgefed version, and the git commit plus a dirty flag (uncommitted changes to ``paths``,
    the code; data and results are covered by hashes, and a benchmark rewrites its own results)
    when edgefed runs from a checkout; both null for an installed wheel. A copy of the sources
    whose git folder is missing or out of date (a build machine's, an accelerator's) is named by
    ``$EDGEFED_SOURCE_COMMIT``: recorded as the commit, with ``dirty`` unknown."""
    declared = os.environ.get("EDGEFED_SOURCE_COMMIT")
    if declared:
        return {"edgefed": versions()["edgefed"], "commit": declared, "dirty": None}
    commit = _git("rev-parse", "HEAD", root=root) if (root / ".git").exists() else None
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", *paths, root=root)
        dirty = None if status is None else status != ""
    return {"edgefed": versions()["edgefed"], "commit": commit, "dirty": dirty}


def machine() -> dict:
    """The host that produced the numbers (what host_seconds and benchmark timings depend on).
    Torch is read only where this process loaded it: a process that ran no model (a replay) records
    the installed version and no threads or GPU."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {"cpu": host_cpu(), "cores": os.cpu_count(), "torch_threads": None, "torch": versions()["torch"],
                "gpu": None, "platform": platform.platform()}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": host_cpu(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "gpu": gpu, "platform": platform.platform()}


def _cache_file() -> Path:
    from edgefed.algorithms.gguf import cache_dir  # the one edgefed cache folder ($EDGEFED_CACHE)

    return cache_dir() / "sha256.json"


def _load_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) and data.get("format") == HASH_CACHE_FORMAT else {}


def sha256(path: Path) -> str:
    """The file's sha256, from the cache when its size and mtime are unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _load_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    stale = f"{path}|"
    cache = {k: v for k, v in cache.items() if not k.startswith(stale)}  # older versions of this file
    cache[key] = value
    try:
        atomic_write(_cache_file(), json.dumps({"format": HASH_CACHE_FORMAT, "files": cache}, indent=0))
    except OSError:
        pass  # a read-only home only costs the next run a rehash
    return value


def model_record(name: str, backbone) -> dict:
    """The model as resolved: the hub commit transformers downloaded (``_commit_hash``) and, for a
    local folder, a hash over its weight files; a random-config model (``tiny-bert``) has neither."""
    from edgefed.algorithms.models import resolve_model_path

    record = {"name": name, "revision": getattr(getattr(backbone, "config", None), "_commit_hash", None)}
    if name == "tiny-bert":
        return {**record, "weights": "random config (seeded), no files"}
    path, local = resolve_model_path(name)
    if not local:
        return record
    per_file, combined = folder_sha256(Path(path), WEIGHT_SUFFIXES)
    return {**record, "path": path, "weights_sha256": combined, "files": per_file}


def folder_sha256(folder: Path, suffixes: tuple[str, ...] | None = None) -> tuple[dict[str, str], str]:
    """Per-file hashes of a folder's files (those with ``suffixes``, else all) and one hash over them."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes))
    per_file = {str(p.relative_to(folder)): sha256(p) for p in files}
    return per_file, hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in per_file.items()).encode()).hexdigest()


def dataset_record(spec, base: Path) -> dict | None:
    """A ``task.dataset.hub`` dataset: a save_to_disk folder is hashed like a model folder; one the
    datasets library fetched is named by id and config only (its cache is not ours to hash)."""
    from edgefed.algorithms.data import hub_folder

    if spec.hub is None:
        return None
    record = {"hub": spec.hub, "config": spec.config, "splits": [spec.train, spec.test]}
    folder = hub_folder(spec.hub, base)
    if folder is None:
        return record
    per_file, combined = folder_sha256(folder)
    return {**record, "path": str(folder), "sha256": combined, "files": per_file}


def input_files(scenario, base: Path) -> dict[str, Path]:
    """Every file a run reads, by the scenario field that names it (``scenario.PATH_FIELDS``; a
    replay reads no data, a hub folder is recorded by ``dataset_record``)."""
    from edgefed.devices.profile import CATALOG_PATH
    from edgefed.scenario import named_paths, scenario_dict

    files = {"devices.catalog": CATALOG_PATH}
    for field, path in named_paths(scenario_dict(scenario), base).items():
        if path.is_file() and not (scenario.replay is not None and field[0] == "task"):
            files[".".join(field)] = path
    return files


def run_provenance(scenario, base: Path, backbone=None, learning_device: str | None = None) -> dict:
    files = {field: {"path": str(path), "sha256": sha256(path)} for field, path in input_files(scenario, base).items()}
    model = model_record(scenario.model.name, backbone) if scenario.replay is None else None
    return {"code": code(), "versions": versions(), "machine": machine(), "learning_device": learning_device,
            "files": files, "model": model,
            "dataset": dataset_record(scenario.task.dataset, base) if scenario.replay is None else None}


def write_run_provenance(run_dir: Path, scenario, base: Path, backbone=None, learning_device: str | None = None,
                         record: dict | None = None) -> None:
    """``provenance.json`` in the run directory (machine-dependent, so kept out of the files the
    determinism guarantees cover); ``learning_device``: where the real learning ran (None: replay);
    ``record``: more to record (a comparison's plan hash)."""
    atomic_write(run_dir / PROVENANCE, json.dumps({**run_provenance(scenario, base, backbone, learning_device),
                                                   **(record or {})}, indent=2) + "\n")


def bench_provenance(script: str | Path) -> dict:
    """The ``provenance`` block of a benchmark result: which code, on which machine.
    ``bench/stale.py`` compares its commit with HEAD."""
    script = Path(script).resolve()
    try:
        rel = str(script.relative_to(CHECKOUT))
    except ValueError:
        rel = script.name
    return {**code(paths=CODE_PATHS + (rel,)), "script": rel, "machine": machine(), "versions": versions()}


def write_bench_result(path: Path, figures: dict, script: str | Path) -> None:
    """A benchmark's figures with their ``provenance`` block, written atomically."""
    atomic_write(Path(path), json.dumps({**figures, "provenance": bench_provenance(script)}, indent=2) + "\n")
