"""The vector-store contract (Collection, VectorStore) and the pieces every store shares.

A store never touches disk: `Collection.dump()` returns bytes that the caller encrypts and keeps, and
`VectorStore.load()` takes them back. That is how an index stays encrypted at rest.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from outcrop.errors import Invalid

METRICS = ("cosine", "dot")
SEARCH_MODES = ("SEMANTIC", "HYBRID")


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the caller's chunk row id and a score (higher is better)."""

    id: int
    score: float


class Collection(Protocol):
    """The vectors, metadata and texts of one knowledge base's data sources."""

    dimension: int
    metric: str  # "cosine" | "dot"

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
               texts: Sequence[str]) -> None:
        """Add rows; an id already present is replaced. `texts` feed the keyword index."""

    def delete(self, ids: Iterable[int]) -> None:
        """Remove rows; unknown ids are ignored."""

    def search(self, vector: np.ndarray, k: int, *, filter: Mapping[str, Any] | None = None,
               text: str | None = None, mode: str = "SEMANTIC") -> list[Hit]:
        """The k best rows for `vector` (and `text` in HYBRID mode) among those `filter` allows."""

    def __len__(self) -> int:
        """Live rows."""

    def dump(self) -> bytes:
        """Everything needed to `load` this collection again."""


class VectorStore(Protocol):
    name: str

    def create(self, dimension: int, metric: str) -> Collection: ...

    def load(self, data: bytes) -> Collection: ...


# --- a pickle-free container for dumps: magic, header length, JSON header, then raw little-endian arrays ---

_MAGIC = b"OUTCROP-VECTORS\x00"
_ALIGN = 64
# Only plain numeric dtypes: loading a dump never runs code (no pickle, no object arrays).
_DTYPES = frozenset({"|u1", "|b1", "<i4", "<i8", "<u4", "<f4", "<f8"})


def pack_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialize JSON-able `meta` and named numpy arrays into one byte string."""
    entries: dict[str, dict[str, Any]] = {}
    blobs: list[Any] = []
    offset = 0
    for name, array in arrays.items():
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        array = np.ascontiguousarray(array, dtype=dtype)
        raw = array.reshape(-1).view(np.uint8).data  # a memoryview: no copy until the final join
        entries[name] = {"dtype": dtype.str, "shape": list(array.shape), "offset": offset}
        pad = -len(raw) % _ALIGN
        blobs += [raw, b"\x00" * pad]
        offset += len(raw) + pad
    header = json.dumps({"meta": meta, "arrays": entries}, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<Q", len(header)), header, *blobs])


def unpack_arrays(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of `pack_arrays`; arrays are read-only views into `data`."""
    view = memoryview(data)
    if bytes(view[: len(_MAGIC)]) != _MAGIC or len(view) < len(_MAGIC) + 8:
        raise Invalid("not an Outcrop vector index dump")
    (header_len,) = struct.unpack_from("<Q", view, len(_MAGIC))
    start = len(_MAGIC) + 8
    try:
        header = json.loads(bytes(view[start: start + header_len]))
    except ValueError as e:
        raise Invalid("vector index dump has a corrupt header") from e
    base = start + header_len
    arrays: dict[str, np.ndarray] = {}
    for name, entry in header.get("arrays", {}).items():
        arrays[name] = _array_from(view, base, name, entry)
    return header.get("meta", {}), arrays


def _array_from(view: memoryview, base: int, name: str, entry: Mapping[str, Any]) -> np.ndarray:
    dtype_str, shape, offset = entry.get("dtype"), entry.get("shape"), entry.get("offset")
    if (dtype_str not in _DTYPES or not isinstance(shape, list) or not isinstance(offset, int) or offset < 0
            or not all(isinstance(size, int) and size >= 0 for size in shape)):
        raise Invalid(f"vector index dump: bad entry for array {name!r}")
    dtype = np.dtype(dtype_str)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    end = base + offset + count * dtype.itemsize
    if end > len(view):
        raise Invalid(f"vector index dump: array {name!r} runs past the end")
    return np.frombuffer(view[base + offset: end], dtype=dtype).reshape(shape)


class ReadWriteLock:
    """Many concurrent readers or one writer; a waiting writer holds back new readers (no starvation).

    Readers call acquire_read / release_read directly: searches take this lock on every call, and a context
    manager's generator costs more than the two lock round trips themselves.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._mutex:
            while self._writer or self._writers_waiting:
                self._changed.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._writers_waiting:
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._mutex:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._changed.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._mutex:
                self._writer = False
                self._changed.notify_all()

    @contextmanager
    def reading(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()
