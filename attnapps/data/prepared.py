"""Prepared data: a corpus tokenized and encoded once into memory-mapped arrays, reused by every later run
and by every process of a run.

A store is one directory, named by a key that hashes the data files' contents and every option that
changes what is stored (the tokenizer's, the length filter's, the task's own). It holds:

* ``<name>.ids`` + ``<name>.offsets`` per sequence column: all sequences of a split back to back in one
  flat array (``uint16`` below 65,536 symbols, else ``int32``; ``uint8`` for UTF-8 text) and the ``int64``
  start of each (``n + 1`` offsets) -- the layout of fairseq's ``MMapIndexedDataset`` and nanoGPT's ``.bin``
  files; an item is two small reads at known positions (:class:`Ragged`), so a corpus of any size costs a
  run the bytes its batches read, and a length is ``offsets[i + 1] - offsets[i]`` without reading a token;
* ``<name>.npy`` per flat column (labels, counts);
* ``state.pt``: the task's fitted state (tokenizers, vocabularies), loaded with ``weights_only=True``;
* ``manifest.json``: the key, the columns, the task's notes, how long preparing took -- written last: a
  directory without it is not a store.

Why not Arrow (``datasets``/``pyarrow``): the columns here are integer sequences and text, which two flat
arrays hold exactly, with nothing to install and nothing to convert when a batch is read; Arrow would add a
large dependency for the same layout.

A store is built in a temporary directory and renamed into place (atomic: a reader never sees half of
one). Processes that need the same store at once (the ranks of a ``torchrun`` job on one machine, two runs
started together) take a file lock: the first builds, the others wait and open it read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from array import array
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

FORMAT = 2  # bumped when the layout changes: older stores are then rebuilt, never misread
CHUNK = 1 << 20  # tokens written per flush


def store_key(name: str, files: Iterable[str | Path], options: dict) -> str:
    """``<name>-<hash>``: the hash of the files' contents (SHA-256 of each, read in 1 MiB chunks and noted
    for the run's provenance: any size, flat memory), ``options`` (JSON-able: what else changes what is
    stored) and the layout's :data:`FORMAT`. The files are hashed by content, not by path or time: the same
    data moved or copied is the same store."""
    from attnapps import provenance

    digests = sorted(provenance.record_file(f) for f in files)
    h = hashlib.sha256(json.dumps({"format": FORMAT, "files": digests, **options}, sort_keys=True,
                                  default=str).encode())
    return f"{name}-{h.hexdigest()[:24]}"


def fingerprint(value) -> str:
    """SHA-256 of a state's value by content (dicts by sorted key, tensors by dtype, shape and bytes)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                h.update(repr(k).encode() + b":")
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        elif torch.is_tensor(v):
            h.update(f"tensor {v.dtype} {tuple(v.shape)}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(v).encode())
        h.update(b",")

    feed(value)
    return h.hexdigest()


def id_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65536 else np.int32


class Ragged(Sequence):
    """Variable-length sequences stored flat: ``column[i]`` is a list of ints (or a ``str`` for a text
    column); a slice gives a list; ``lengths`` ``(n,)`` comes from the offsets alone.

    Items are read by position (``os.pread``: two small reads an item) rather than through a memory map:
    a mapped page stays counted in the process's resident memory once read, so shuffled batches over a
    large corpus would grow it by ~16 MB a batch (the kernel maps neighbouring cached pages with each one);
    read this way, the run's memory stays what its model and batches need, and the operating system's page
    cache does the caching. The file handles are reopened in a forked process (DataLoader workers)."""

    def __init__(self, ids_path: Path, offsets_path: Path, dtype, n: int, text: bool = False):
        self.ids_path, self.offsets_path, self.dtype, self.n, self.text = ids_path, offsets_path, np.dtype(dtype), n, text
        self.files = _ProcessFiles(ids_path, offsets_path)

    def _files(self) -> tuple[int, int]:
        return self.files.fds()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return self._run(start, stop)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        ids_fd, offsets_fd = self._files()
        start, end = np.frombuffer(_pread(offsets_fd, 16, 8 * i), dtype=np.int64)
        size = self.dtype.itemsize
        raw = _pread(ids_fd, int(end - start) * size, int(start) * size)
        return raw.decode("utf-8") if self.text else np.frombuffer(raw, dtype=self.dtype).tolist()

    def _run(self, start: int, stop: int) -> list:
        """Items ``start:stop`` with two reads in all (their offsets, then their tokens or bytes)."""
        if stop <= start:
            return []
        ids_fd, offsets_fd = self._files()
        offsets = np.frombuffer(_pread_all(offsets_fd, 8 * (stop - start + 1), 8 * start), dtype=np.int64)
        size, base = self.dtype.itemsize, int(offsets[0])
        raw = _pread_all(ids_fd, (int(offsets[-1]) - base) * size, base * size)
        bounds = (offsets - base).tolist()
        if self.text:
            return [raw[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
        flat = np.frombuffer(raw, dtype=self.dtype)
        return [flat[a:b].tolist() for a, b in zip(bounds, bounds[1:])]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.fromfile(self.offsets_path, dtype=np.int64))


class _ProcessFiles:
    """Read-only descriptors of ``paths``, opened on first use in each process (a forked DataLoader worker
    opens its own) and left out when pickled."""

    def __init__(self, *paths: Path):
        self.paths, self._open = paths, None  # (pid, fds)

    def fds(self) -> tuple[int, ...]:
        if self._open is None or self._open[0] != os.getpid():
            self._open = (os.getpid(), tuple(os.open(p, os.O_RDONLY) for p in self.paths))
        return self._open[1]

    def __getstate__(self):
        return {**self.__dict__, "_open": None}

    def __del__(self):
        if getattr(self, "_open", None) is not None and self._open[0] == os.getpid():
            for fd in self._open[1]:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _pread_all(fd: int, size: int, offset: int, short: str = "a prepared column ends early") -> bytes:
    """Exactly ``size`` bytes from ``offset`` (a large read may come back in parts); ``EOFError(short)``
    where the file ends first."""
    data = _pread(fd, size, offset)
    while len(data) < size:
        more = _pread(fd, size - len(data), offset + len(data))
        if not more:
            raise EOFError(short)
        data += more
    return data


def _pread(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes of ``fd`` from ``offset`` (``os.pread``; a seek and a read where there is none)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class Rows:
    """A ``(n, ...)`` array in a raw file (C order, no header), read by position: ``rows[index]`` -- an
    int, a slice (step 1), or a list / array / tensor of row numbers -- reads only those rows (one
    ``os.pread`` for a slice, one a row otherwise) and gives a tensor, so a large array (image features)
    costs a process the rows its batches read. ``dim()``, ``size()``, ``shape``, ``dtype`` and ``len`` as a
    tensor's. Handles are reopened after a fork and dropped when pickled (DataLoader workers)."""

    def __init__(self, path: Path, dtype, shape: Sequence[int]):
        self.path, self.np_dtype, self._shape = Path(path), np.dtype(dtype), tuple(int(x) for x in shape)
        self.row_bytes = int(np.prod(self._shape[1:], dtype=np.int64)) * self.np_dtype.itemsize
        self.files = _ProcessFiles(self.path)

    def _read(self, start: int, count: int) -> np.ndarray:
        data = bytearray(_pread_all(self.files.fds()[0], count * self.row_bytes, start * self.row_bytes,
                                    f"{self.path}: shorter than its {self._shape[0]} rows"))  # (writable: torch)
        return np.frombuffer(data, dtype=self.np_dtype).reshape((count, *self._shape[1:]))

    def __getitem__(self, index) -> torch.Tensor:
        n = self._shape[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                raise IndexError("Rows: slices with a step are not read")
            return torch.from_numpy(self._read(start, max(0, stop - start)))
        if isinstance(index, (int, np.integer)):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {index} of {n}")
            return torch.from_numpy(self._read(i, 1)[0])
        rows = [int(i) for i in (index.tolist() if hasattr(index, "tolist") else index)]
        if not rows:
            return torch.from_numpy(np.zeros((0, *self._shape[1:]), dtype=self.np_dtype))
        return torch.stack([self[i] for i in rows])

    def __len__(self) -> int:
        return self._shape[0]

    def dim(self) -> int:
        return len(self._shape)

    def size(self, dim: int | None = None):
        return torch.Size(self._shape) if dim is None else self._shape[dim]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.zeros(0, dtype=self.np_dtype)).dtype


class Chain(Sequence):
    """Sequences one after another, read by position (``chain[i]`` looks up which one holds item ``i``):
    e.g. the source and target sides of a corpus as one list of sentences, without copying either."""

    def __init__(self, *parts: Sequence):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k][i - int(self.starts[k])]


class Table(Sequence):
    """Columns of equal length zipped: ``table[i]`` is a tuple of the columns' ``i``-th items."""

    def __init__(self, *columns: Sequence):
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"columns of unequal lengths {[len(c) for c in columns]}")
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return tuple(_item(c, i) for c in self.columns)


class View(Sequence):
    """``n`` items made by ``get(i)`` when asked for (a slice gives a list): a split's examples or
    references over a store without a list of them all."""

    def __init__(self, n: int, get: Callable[[int], Any]):
        self.n, self.get = n, get

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.get(j) for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.get(i)


def _item(column, i):
    value = column[i]
    return value.item() if isinstance(value, np.generic) else value


class Column:
    """One sequence or text column being written: :meth:`add` item by item (flushed every :data:`CHUNK`
    tokens: memory flat in the corpus size), then :meth:`close`."""

    def __init__(self, writer: "Writer", name: str, dtype, kind: str):
        self.writer, self.name, self.dtype, self.kind = writer, name, np.dtype(dtype), kind
        self.file = open(writer.directory / f"{name}.ids", "wb")
        self.offsets, self.pending, self.size, self.total = array("q", [0]), [], 0, 0

    def add(self, item) -> None:
        """A token-id sequence, or a string for a text column."""
        part = (np.frombuffer(item.encode("utf-8"), dtype=np.uint8) if self.kind == "text"
                else np.asarray(item, dtype=self.dtype))
        self.pending.append(part)
        self.size += len(part)
        self.total += len(part)
        self.offsets.append(self.total)
        if self.size >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            np.concatenate(self.pending).astype(self.dtype, copy=False).tofile(self.file)
        self.pending, self.size = [], 0

    def close(self) -> int:
        self._flush()
        self.file.close()
        np.frombuffer(self.offsets, dtype=np.int64).tofile(self.writer.directory / f"{self.name}.offsets")
        n = len(self.offsets) - 1
        self.writer.columns[self.name] = {"kind": self.kind, "dtype": self.dtype.name, "n": n, "tokens": self.total}
        return n


class Writer:
    """Writes a store's columns into ``directory`` (a store being built); ``notes``: JSON-able facts the
    task wants back on a cache hit (counts of skipped lines, choices made from the data)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.columns: dict[str, dict] = {}
        self.notes: dict[str, Any] = {}

    def column(self, name: str, vocab_size: int = 0, text: bool = False) -> Column:
        """A sequence column of token ids below ``vocab_size``, or (``text``) of strings."""
        return Column(self, name, np.uint8 if text else id_dtype(vocab_size), "text" if text else "ids")

    def ragged(self, name: str, sequences: Iterable[Sequence[int]], vocab_size: int) -> int:
        """Stream ``sequences`` (token-id lists) into column ``name``; returns how many."""
        column = self.column(name, vocab_size)
        for seq in sequences:
            column.add(seq)
        return column.close()

    def texts(self, name: str, texts: Iterable[str]) -> int:
        """Stream strings into column ``name`` (UTF-8 bytes); returns how many."""
        column = self.column(name, text=True)
        for text in texts:
            column.add(text)
        return column.close()

    def read(self, name: str):
        """A column written so far, memory-mapped (what a build fits on after encoding, without keeping the
        encoded corpus in memory): as :meth:`Store.column` reads it."""
        return _open_column(self.directory, name, self.columns[name])

    def array(self, name: str, values) -> int:
        """A flat column (``np.save``): labels, counts."""
        values = np.asarray(values)
        np.save(self.directory / f"{name}.npy", values)
        self.columns[name] = {"kind": "array", "dtype": values.dtype.name, "n": len(values)}
        return len(values)

    def state(self, state: dict) -> None:
        """The task's fitted state (tensors, numbers, strings, lists, dicts: ``weights_only``-loadable)."""
        torch.save(state, self.directory / "state.pt")


class Store:
    """An opened store (read-only: sequence columns read by position, flat columns memory-mapped)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / "manifest.json").read_text())
        self.notes = self.manifest.get("notes", {})

    def __contains__(self, name: str) -> bool:
        return name in self.manifest["columns"]

    def column(self, name: str):
        """A :class:`Ragged` for a sequence or text column, a read-only array for a flat one."""
        spec = self.manifest["columns"].get(name)
        if spec is None:
            raise KeyError(f"{self.directory}: no column {name!r}")
        return _open_column(self.directory, name, spec)

    def state(self) -> dict | None:
        f = self.directory / "state.pt"
        return torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None

    def derived(self, name: str, options: dict, build: Callable[[], Any]) -> tuple[Any, dict]:
        """What a run fits on the stored data (a companion model, a vocabulary), kept beside it: built by
        ``build()`` the first time for these ``options`` (JSON-able: whatever else it depends on), then
        loaded (``weights_only``: tensors, numbers, strings, lists, dicts). Returns ``(value, info)``,
        ``info = {"hit", "seconds": what building it took}``. Written atomically under a lock (one process
        builds, the others wait and load); a store on a read-only disk builds it each time instead."""
        path = self.directory / "derived" / f"{name}-{fingerprint(options)[:16]}.pt"

        def load():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                return saved["value"], {"hit": True, "seconds": saved["seconds"]}
            except (OSError, RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError):
                return None  # missing or damaged: built again

        if (found := load()) is not None:
            return found
        with ExitStack() as stack:
            try:
                path.parent.mkdir(exist_ok=True)
                stack.enter_context(_locked(path.with_suffix(".lock")))
                writable = True
            except OSError:  # a read-only store
                writable = False
            if writable and (found := load()) is not None:  # another process built it meanwhile
                return found
            start = time.perf_counter()
            value = build()
            seconds = time.perf_counter() - start
            if writable:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                torch.save({"value": value, "seconds": seconds}, tmp)
                os.replace(tmp, path)
            return value, {"hit": False, "seconds": seconds}


def _open_column(directory: Path, name: str, spec: dict):
    if spec["kind"] == "array":
        return np.load(directory / f"{name}.npy", mmap_mode="r")
    return Ragged(directory / f"{name}.ids", directory / f"{name}.offsets", spec["dtype"], spec["n"],
                  text=spec["kind"] == "text")


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (``fcntl.flock``; where there is none, no lock: runs then at worst
    prepare the same store twice, each into its own temporary directory)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_or_build(root: str | Path, key: str, build: Callable[[Writer], None]) -> tuple[Store, dict]:
    """The store ``root/key``, built by ``build(writer)`` if missing. Returns ``(store, info)`` with
    ``info = {"hit": bool, "seconds": preparing time now (0 on a hit), "path", "prepared_seconds": what
    building it took}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key

    def found() -> tuple[Store, dict] | None:
        if not (final / "manifest.json").is_file():
            return None
        store = Store(final)
        return store, {"hit": True, "seconds": 0.0, "path": str(final), "prepared_seconds": store.manifest["seconds"]}

    if hit := found():
        return hit
    with _locked(root / f".{key}.lock"):
        if hit := found():  # another process built it while this one waited
            return hit
        start = time.perf_counter()
        tmp = root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            writer = Writer(tmp)
            build(writer)
            seconds = time.perf_counter() - start
            manifest = {"key": key, "format": FORMAT, "columns": writer.columns, "notes": writer.notes,
                        "seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            if final.exists():  # a directory left without its manifest: not a store
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Store(final), {"hit": False, "seconds": seconds, "path": str(final), "prepared_seconds": seconds}


def describe(info: dict | None) -> str:
    """The report's sentence about the prepared data: hit or miss, and the time."""
    if not info:
        return ""
    if info["hit"]:
        return (f"Prepared data reused (cache hit, prepared earlier in {info['prepared_seconds']:.1f} s): "
                f"`{info['path']}`.")
    return f"Data prepared in {info['seconds']:.1f} s (cache miss), kept for later runs: `{info['path']}`."


def prepared_metrics(info: dict | None) -> dict[str, float]:
    """``metrics.json``'s ``data.cache_hit`` (1/0) and ``data.prepare_seconds`` (preparing in this run)."""
    return {"data.cache_hit": int(info["hit"]), "data.prepare_seconds": round(info["seconds"], 3)} if info else {}
