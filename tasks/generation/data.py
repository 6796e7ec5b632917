"""Language-model corpora: plain text files, one contiguous text per split, encoded into memory maps.

Layouts:

* ``data.path=DIR``: ``DIR/{train,valid,test}.txt`` (``.txt.gz`` also read); a missing valid/test
  split is cut from the end of train (5% each, contiguous)
* ``data.path=FILE.txt``: one text, split 90/5/5 by contiguous chunks (cut at a line break)
* ``data.format=wikitext``: ``DIR/wiki.{train,valid,test}.raw`` (WikiText-2/103 raw; ``.tokens`` too)
* ``data.path=""``: the embedded Jane Austen novels (``data/generation/*.txt.gz``)

Text must be UTF-8: a bad byte raises a :class:`DataError` naming file and line, or with
``data.on_error=skip`` the line is dropped and counted.

Encoded splits are cached as flat ``uint16``/``int32`` arrays in ``<cache_dir>/generation/`` and
opened with ``numpy.memmap``, so a large corpus is never held as Python lists; the key hashes the
tokenizer and the text.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from attnapps import provenance
from attnapps.data.files import ErrorPolicy, check_not_utf16, data_dir
from attnapps.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


def decode_text(path: Path, policy: ErrorPolicy) -> str:
    """A file's UTF-8 text (gzip if ``.gz``); undecodable lines raise or are dropped under ``policy``."""
    provenance.record_file(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(path, None, f"not a readable gzip file ({e})") from None
    check_not_utf16(path, raw[:4])
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        pass
    out = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            policy.bad(path, number, f"not valid UTF-8 (byte {e.start})")
    return "\n".join(out).lstrip("\ufeff")


def _find(directory: Path, names: list[str]) -> Path | None:
    for name in names:
        for suffix in ("", ".gz"):
            p = directory / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def split_contiguous(text: str, fractions=(0.9, 0.05, 0.05)) -> dict[str, str]:
    """Cut ``text`` into train/valid/test by contiguous chunks, each cut at a line break."""
    cuts, at = [], 0
    for f in fractions[:-1]:
        at += f
        i = text.find("\n", int(len(text) * at))
        cuts.append(len(text) if i < 0 else i + 1)
    a, b = cuts
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}


def load_corpus(path: str = "", fmt: str = "txt", on_error: str = "raise") -> tuple[dict[str, str], ErrorPolicy, str]:
    """``({"train", "valid", "test"}: text), policy, description``."""
    policy = ErrorPolicy(on_error)
    if fmt not in ("txt", "wikitext"):
        raise ConfigError(f"data.format={fmt!r}: choose txt or wikitext")
    root = data_dir(path, "generation")
    if root.is_file():
        text = decode_text(root, policy)
        return _checked(split_contiguous(text), root), policy, f"{root} (split 90/5/5 by contiguous chunks)"
    if not root.is_dir():
        raise DataError(root, None, "no such file or directory")
    names = ({s: [f"wiki.{s}.raw", f"wiki.{s}.tokens"] for s in SPLITS} if fmt == "wikitext"
             else {"train": ["train.txt"], "valid": ["valid.txt", "val.txt", "dev.txt"], "test": ["test.txt"]})
    files = {s: _find(root, names[s]) for s in SPLITS}
    if files["train"] is None:
        raise DataError(root / names["train"][0], None, "no such file (the training text)")
    texts = {s: decode_text(f, policy) for s, f in files.items() if f is not None}
    if "valid" not in texts or "test" not in texts:
        carved = split_contiguous(texts["train"], (0.9, 0.05, 0.05))
        texts["train"] = carved["train"]
        texts.setdefault("valid", carved["valid"])
        texts.setdefault("test", carved["test"])
    return _checked(texts, root), policy, str(root) if path else "embedded Jane Austen novels"


def _checked(texts: dict[str, str], where: Path) -> dict[str, str]:
    for s in SPLITS:
        if not texts.get(s, "").strip():
            raise DataError(where, None, f"the {s} text is empty")
    return texts


def encode_cached(text: str, encode, fingerprint: str, vocab_size: int, cache_dir: Path, name: str) -> np.ndarray:
    """``encode(text)`` as a read-only memory-mapped 1-D array, cached on disk under a key of the
    tokenizer's ``fingerprint`` and the text (``uint16`` below 65,536 symbols, else ``int32``)."""
    key = hashlib.sha1(fingerprint.encode() + b"\0" + text.encode("utf-8")).hexdigest()[:20]
    dtype = np.uint16 if vocab_size < 65536 else np.int32
    file = Path(cache_dir) / "generation" / f"{name}-{key}.{np.dtype(dtype).name}"
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        ids = np.asarray(encode(text), dtype=dtype)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        ids.tofile(tmp)
        os.replace(tmp, file)  # atomic: a reader never sees a half-written array
    if file.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r")


class Windows(torch.utils.data.Dataset):
    """Non-overlapping windows of ``context + 1`` tokens over a memory-mapped token array: item ``i``
    is ``ids[i*context : (i+1)*context + 1]`` (inputs are the first ``context``, targets the last)."""

    def __init__(self, ids: np.ndarray, context: int):
        self.ids, self.context = ids, context
        self.n = max(0, (len(ids) - 1) // context)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.context
        return torch.from_numpy(np.asarray(self.ids[start:start + self.context + 1], dtype=np.int64))
