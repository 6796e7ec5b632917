"""Language-model corpora: plain text files, one contiguous text per split, encoded into memory maps.

Layouts:

* ``data.path=DIR``: ``DIR/{train,valid,test}.txt`` (``.txt.gz`` also read); a missing valid/test
  split is cut from the end of train (5% each, contiguous)
* ``data.path=FILE.txt``: one text, split 90/5/5 by contiguous chunks (cut at a line break)
* ``data.format=wikitext``: ``DIR/wiki.{train,valid,test}.raw`` (WikiText-2/103 raw; ``.tokens`` too)
* ``data.path=""``: the embedded Jane Austen novels (``data/generation/*.txt.gz``)

Text must be UTF-8: a bad byte raises a :class:`DataError` naming file and line, or with
``data.on_error=skip`` the line is dropped and counted.

Encoded splits are kept in the prepared store (:mod:`attnapps.data.prepared`, keyed by the files'
contents and the tokenizer options) as flat ``uint16``/``int32`` arrays, memory-mapped when read: a later
run reads no text at all, and a large corpus is never held as Python lists.
"""

from __future__ import annotations

import gzip
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


def corpus_files(path: str = "", fmt: str = "txt") -> list[Path]:
    """The files :func:`load_corpus` reads, without reading them (what the prepared store's key hashes)."""
    if fmt not in ("txt", "wikitext"):
        raise ConfigError(f"data.format={fmt!r}: choose txt or wikitext")
    root = data_dir(path, "generation")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(root, None, "no such file or directory")
    names = _split_names(fmt)
    files = [f for f in (_find(root, names[s]) for s in SPLITS) if f is not None]
    if _find(root, names["train"]) is None:
        raise DataError(root / names["train"][0], None, "no such file (the training text)")
    return files


def _split_names(fmt: str) -> dict[str, list[str]]:
    return ({s: [f"wiki.{s}.raw", f"wiki.{s}.tokens"] for s in SPLITS} if fmt == "wikitext"
            else {"train": ["train.txt"], "valid": ["valid.txt", "val.txt", "dev.txt"], "test": ["test.txt"]})


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
    names = _split_names(fmt)
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


def encode_pieces(text: str, encode, lines: int = 20000):
    """``encode(text)`` in pieces of ``lines`` lines (whose concatenation is the same ids, for encoders that
    mark a newline by itself, as :meth:`GenerationTask.encode` does), so a long text never becomes one
    Python list of ids."""
    parts = text.split("\n")
    for start in range(0, len(parts), lines):
        last = start + lines >= len(parts)
        yield encode("\n".join(parts[start:start + lines]) + ("" if last else "\n"))


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
