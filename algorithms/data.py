"""Text-classification data: loading, tokenising once, seeded partitions and batches."""
from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgefed.algorithms.models import Tokenized


class DataError(ValueError):
    """Bad data input; the message names the file or field."""


@dataclass
class TextDataset:
    texts: list[str]
    labels: np.ndarray  # int64 class ids 0..num_labels-1
    label_names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> "TextDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return TextDataset([self.texts[i] for i in idx], self.labels[idx], self.label_names, self.source)


def open_text(path: Path):
    """A data file as text; ``.gz`` files (how the repository ships its larger data) decompress."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_rows(path: Path, fmt: str) -> list[dict]:
    try:
        if fmt == "jsonl":
            with open_text(path) as fh:
                return [json.loads(line) for line in fh if line.strip()]
        delimiter = "\t" if fmt == "tsv" else ","
        with open_text(path) as fh:
            # SST-2/AG News TSVs are unquoted; quotes inside text are literal
            quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
            return list(csv.DictReader(fh, delimiter=delimiter, quoting=quoting))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None


def load_dataset(path: Path, text_field: str, label_field: str, fmt: str | None = None,
                 label_names: list[str] | None = None, limit: int | None = None,
                 min_words: int | None = None) -> TextDataset:
    """Read a local TSV/CSV/JSONL file with named text and label columns."""
    suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    fmt = fmt or {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "tsv")
    return from_rows(read_rows(path, fmt), str(path), text_field, label_field, label_names, limit, min_words)


def from_rows(rows: list[dict], source: str, text_field: str, label_field: str,
              label_names: list[str] | None = None, limit: int | None = None,
              min_words: int | None = None) -> TextDataset:
    """Rows with named text and label columns as a dataset; ``source`` names them in errors. With
    ``min_words``, rows of fewer whitespace-separated words are dropped first (then ``limit``)."""
    if not rows:
        raise DataError(f"{source}: no examples")
    for field in (text_field, label_field):
        if field not in rows[0]:
            raise DataError(f"{source}: no column {field!r} (has {', '.join(map(str, rows[0].keys()))})")
    if min_words is not None:
        rows = [r for r in rows if len(str(r[text_field]).split()) >= min_words]
        if not rows:
            raise DataError(f"{source}: no example has {min_words} or more words (task.dataset.train_min_words)")
    if limit is not None:
        rows = rows[:limit]
    raw_labels = [str(r[label_field]).strip() for r in rows]
    if label_names is None:
        distinct = sorted(set(raw_labels), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
        label_names = distinct
    index = {name: i for i, name in enumerate(label_names)}
    try:
        labels = np.array([index[v] for v in raw_labels], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{source}: label {exc.args[0]!r} is not one of {label_names}") from None
    texts = [str(r[text_field]) for r in rows]
    return TextDataset(texts, labels, list(label_names), source)


def split_off(data: TextDataset, count: int, draw: np.random.Generator) -> tuple[TextDataset, TextDataset]:
    """``count`` examples drawn from ``data`` and the rest (each keeping the file's order)."""
    if count >= len(data):
        raise DataError(f"task.tuning_split: {count} examples asked of a training set of {len(data)}")
    held = np.zeros(len(data), dtype=bool)
    held[draw.choice(len(data), size=count, replace=False)] = True
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))


def load_split(spec, split: str, folder: Path, label_names: list[str] | None = None) -> TextDataset:
    """``task.dataset``'s ``train`` or ``test``: a local file (relative to ``folder``), or with
    ``hub`` that split of a Hugging Face dataset."""
    name, limit = getattr(spec, split), getattr(spec, f"{split}_limit")
    min_words = spec.train_min_words if split == "train" else None
    if spec.hub is None:
        return load_dataset(folder / Path(name).expanduser(), spec.text_field, spec.label_field, spec.format,
                            label_names, limit, min_words)
    return load_hub_split(spec.hub, spec.config, name, folder, spec.text_field, spec.label_field, label_names, limit,
                          min_words)


def hub_folder(hub: str, folder: Path) -> Path | None:
    """The ``save_to_disk`` folder ``hub`` names, if there is one; else ``hub`` is a hub id."""
    path = folder / Path(hub).expanduser()
    return path if path.is_dir() else None


def load_hub_split(hub: str, config: str | None, split: str, folder: Path, text_field: str, label_field: str,
                   label_names: list[str] | None = None, limit: int | None = None,
                   min_words: int | None = None) -> TextDataset:
    """A split of a Hugging Face dataset: a hub id (needs a network, or the datasets cache) or a
    folder written by ``save_to_disk``. Class-label columns keep their class names."""
    try:
        import datasets
        import huggingface_hub.utils
    except ImportError:
        raise DataError("task.dataset.hub: needs `pip install 'edgefed[datasets]'`") from None
    # retries, warnings and progress bars would spill many lines onto stderr; a failure is one line
    huggingface_hub.utils.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    local = hub_folder(hub, folder)
    where = f"{hub!r}" + (f" (config {config!r})" if config else "")
    try:
        if local is not None:
            data = datasets.load_from_disk(str(local))
            if isinstance(data, datasets.DatasetDict):
                if split not in data:
                    raise DataError(f"task.dataset: {local} has no split {split!r} (has {', '.join(data)})")
                data = data[split]
        else:
            data = datasets.load_dataset(hub, config, split=split)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many kinds (not found, offline, bad config or split)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"task.dataset.hub: cannot load {where} split {split!r}: {first}") from None
    for field in (text_field, label_field):
        if field not in data.column_names:
            raise DataError(f"task.dataset.hub: {where} split {split!r} has no column {field!r} "
                            f"(has {', '.join(data.column_names)})")
    if min_words is not None:
        data = data.filter(lambda text: len(str(text).split()) >= min_words, input_columns=text_field)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    feature = data.features[label_field]
    names = getattr(feature, "names", None)  # a ClassLabel: ids -> class names
    labels = [names[v] if names else v for v in data[label_field]]
    rows = [{text_field: t, label_field: v} for t, v in zip(data[text_field], labels)]
    return from_rows(rows, f"{hub}[{split}]", text_field, label_field, label_names or names, None)


@dataclass
class FederatedData:
    """The training set tokenised once, each client's example indices, the held-out set, and
    (with ``task.evaluate_on: both``) the tuning split that hyperparameter choices read."""

    train: Tokenized
    parts: list[np.ndarray]
    test: Tokenized
    tuning: Tokenized | None = None

    @property
    def num_clients(self) -> int:
        return len(self.parts)


def partition(labels: np.ndarray, num_clients: int, kind: str, seed: int, alpha: float = 0.5,
              shards_per_client: int = 2) -> list[np.ndarray]:
    """Split example indices among clients: ``iid``, ``dirichlet`` (label skew, Hsu et al. 2019)
    or ``shards`` (sorted by label, McMahan et al. 2017). Every client gets at least one example."""
    n = len(labels)
    if num_clients > n:
        raise DataError(f"fleet: {num_clients} clients but only {n} training examples (task.dataset.train, train_limit)")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif kind == "dirichlet":
        parts_list: list[list[int]] = [[] for _ in range(num_clients)]
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts_list[client].extend(chunk.tolist())
        parts = [np.array(p, dtype=np.int64) for p in parts_list]
    elif kind == "shards":
        order = np.argsort(labels, kind="stable")
        shards = np.array_split(order, num_clients * shards_per_client)
        shard_ids = rng.permutation(len(shards))
        parts = [np.concatenate([shards[s] for s in shard_ids[c::num_clients]]) for c in range(num_clients)]
    else:
        raise DataError(f"partition.kind: unknown {kind!r} (iid, dirichlet, shards)")
    # top up empty clients (Dirichlet draws, more shards than examples) from the largest, so every
    # client can take a step
    for client, part in enumerate(parts):
        if len(part) == 0:
            donor = int(np.argmax([len(p) for p in parts]))
            parts[client], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return [np.sort(p) for p in parts]


def sample_batch(part: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of a client's examples; with replacement only when the client has too few."""
    return rng.choice(part, size=batch_size, replace=len(part) < batch_size)
