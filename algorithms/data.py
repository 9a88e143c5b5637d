"""Text-classification data: loading, tokenising once, seeded partitions and batches."""
from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgefed.algorithms.models import Batch, seq_bucket


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
                 label_names: list[str] | None = None, limit: int | None = None) -> TextDataset:
    """Read a local TSV/CSV/JSONL file with named text and label columns."""
    suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    fmt = fmt or {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "tsv")
    rows = read_rows(path, fmt)
    if not rows:
        raise DataError(f"{path}: no examples")
    for field in (text_field, label_field):
        if field not in rows[0]:
            raise DataError(f"{path}: no column {field!r} (has {', '.join(map(str, rows[0].keys()))})")
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
        raise DataError(f"{path}: label {exc.args[0]!r} is not one of {label_names}") from None
    texts = [str(r[text_field]) for r in rows]
    return TextDataset(texts, labels, list(label_names), str(path))


class Tokenized:
    """A dataset tokenised once; batches are padded to a multiple of 16 tokens (few shapes, so
    FLOP counts are measured once per shape and cached)."""

    def __init__(self, data: TextDataset, tokenizer, max_length: int, prompt: str = "{text}"):
        texts = [prompt.format(text=t) for t in data.texts]
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.ids = enc["input_ids"]
        self.labels = torch.as_tensor(data.labels)
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices) -> Batch:
        rows = [self.ids[i] for i in indices]
        length = seq_bucket(max(len(r) for r in rows), self.max_length)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.as_tensor(r)
            mask[j, : len(r)] = 1
        return Batch(ids, mask, self.labels[list(indices)])

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))


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
