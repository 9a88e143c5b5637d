"""Wire messages with an exact, reproducible size.

A message is a fixed header plus named arrays. ``encode()`` gives the real serialized bytes and
``nbytes`` their length (computed from shapes, so counting a 90 MB weight message costs nothing);
tests check that the two agree.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"EDGF"
# magic, version, kind id, round, client, number of arrays
HEADER = struct.Struct("<4sHHiiI")
# per array: name id, dtype code, ndim, then ndim uint32 dims
ARRAY_HEAD = struct.Struct("<HBB")
DTYPES = {np.dtype("float32"): 1, np.dtype("float16"): 2, np.dtype("uint32"): 3, np.dtype("uint64"): 4,
          np.dtype("int64"): 5, np.dtype("uint16"): 6, np.dtype("int32"): 7}
KINDS = {"weights": 2, "history": 3, "seed-scalars": 4, "partial": 6}  # ids on the wire; 1 and 5 are retired


@dataclass(frozen=True)
class Message:
    kind: str
    round: int
    client: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        size = HEADER.size
        for arr in self.arrays.values():
            size += ARRAY_HEAD.size + 4 * arr.ndim + arr.nbytes
        return size

    def encode(self) -> bytes:
        parts = [HEADER.pack(MAGIC, 1, KINDS[self.kind], self.round, self.client, len(self.arrays))]
        for i, arr in enumerate(self.arrays.values()):
            arr = np.ascontiguousarray(arr)
            parts.append(ARRAY_HEAD.pack(i, DTYPES[arr.dtype], arr.ndim))
            parts.append(struct.pack(f"<{arr.ndim}I", *arr.shape))
            parts.append(arr.tobytes())
        return b"".join(parts)
