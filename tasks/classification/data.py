"""Classification data: labelled texts from TSV, CSV or the IMDB ``aclImdb`` folder layout.

Layouts under ``data.path=DIR`` (the embedded default is ``data/classification/``):

* ``data.format=tsv`` (default): ``DIR/{train,valid,test}.tsv``, one ``text<TAB>label`` per line
* ``data.format=csv``: ``DIR/{train,valid,test}.csv`` with a header; columns ``data.text_column``
  and ``data.label_column``
* ``data.format=imdb``: ``DIR/{train,test}/<label>/*.txt`` (``aclImdb``: ``pos``/``neg``; ``unsup`` ignored)

Labels are strings, any number of classes (taken from train). A missing valid split is carved from
train (10%, seeded). Bad input (missing tab, empty text, a test/valid label unseen in train, bad UTF-8)
raises a :class:`DataError` naming file and line, or is skipped and counted with ``data.on_error=skip``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnapps import provenance
from attnapps.data.files import ErrorPolicy, SPLIT_NAMES, carve, data_dir, find_split, read_lines
from attnapps.errors import ConfigError, DataError

Example = tuple[str, str, str, int]  # (text, label, file, line)


def read_tsv(path: Path, policy: ErrorPolicy) -> list[Example]:
    out = []
    for number, line in read_lines(path, policy):
        if not line.strip():
            continue
        if "\t" not in line:
            policy.bad(path, number, "expected 'text<TAB>label' (no tab)")
            continue
        text, label = line.rsplit("\t", 1)
        text, label = text.strip(), label.strip()
        if not text or not label:
            policy.bad(path, number, f"empty {'text' if not text else 'label'}")
            continue
        out.append((text, label, str(path), number))
    return out


def read_csv(path: Path, text_column: str, label_column: str, policy: ErrorPolicy) -> list[Example]:
    lines = [text for _, text in read_lines(path, policy)]
    reader = csv.DictReader(io.StringIO("\n".join(lines), newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as e:
        raise DataError(path, 1, f"malformed CSV header ({e})") from None
    missing = [c for c in (text_column, label_column) if c not in (fieldnames or [])]
    if missing:
        raise DataError(path, 1, f"no column {missing[0]!r} in the header {fieldnames} "
                                 "(set data.text_column= / data.label_column=)")
    out = []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a stray carriage return inside an unquoted field
            policy.bad(path, reader.line_num, f"malformed CSV ({e})")
            continue
        number = reader.line_num
        text, label = (row.get(text_column) or "").strip(), (row.get(label_column) or "").strip()
        if not text or not label:
            policy.bad(path, number, f"empty {'text' if not text else 'label'}")
            continue
        out.append((text, label, str(path), number))
    return out


def imdb_files(directory: Path) -> list[tuple[Path, Path]]:
    """``(label folder, review file)`` of an ``aclImdb`` split folder, in reading order (``unsup`` left out)."""
    return [(label_dir, f) for label_dir in sorted(p for p in directory.iterdir() if p.is_dir() and p.name != "unsup")
            for f in sorted(label_dir.glob("*.txt"))]


def read_imdb(directory: Path, policy: ErrorPolicy) -> list[Example]:
    out = []
    files = imdb_files(directory)
    provenance.record_files(str(directory.resolve()), [f for _, f in files])  # one fingerprint for 25k reviews
    for label_dir, f in files:
        text = " ".join(" ".join(t for _, t in read_lines(f, policy, record=False)).replace("<br />", " ").split())
        if not text:
            policy.bad(f, 1, "empty review")
            continue
        out.append((text, label_dir.name, str(f), 1))
    return out


EMBEDDED = {"en": "classification", "zh": "classification_zh"}  # data.embedded -> folder under data/


def example_files(path: str, fmt: str = "tsv", embedded: str = "en") -> tuple[list[Path], str, bool]:
    """What :func:`load_examples` reads, without reading it (the prepared store's key): ``(files, listed,
    has_valid)`` -- the split files of a TSV/CSV layout; for the IMDB layout, whose thousands of reviews are
    not hashed one by one, ``listed``: one fingerprint of their names, sizes and times; whether a valid
    split is given (else it is carved from train with the seed)."""
    directory = data_dir(path, EMBEDDED[str(embedded)])
    if not directory.is_dir():
        raise DataError(directory, None, "data.path is not a directory")
    if fmt in ("tsv", "csv"):
        found = {split: find_split(directory, names, f".{fmt}") for split, names in SPLIT_NAMES.items()}
        return [f for f in found.values() if f is not None], "", found["valid"] is not None
    if fmt == "imdb":  # each split folder fingerprinted as read_imdb records it
        listed = [provenance.record_files(str((directory / split).resolve()), [f for _, f in imdb_files(directory / split)])
                  for split in ("train", "test") if (directory / split).is_dir()]
        return [], " ".join(listed), False
    raise ConfigError(f"data.format={fmt!r}: choose tsv, csv or imdb")


class Encoded(Sequence):
    """A split as ``(ids, label)`` pairs over prepared columns (:mod:`attnapps.data.prepared`): token ids
    cut to ``max_len`` as they are read, so one store serves every ``data.max_len``."""

    def __init__(self, ids, labels, max_len: int):
        self.ids, self.labels, self.max_len = ids, labels, max_len

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.ids[i][: self.max_len], int(self.labels[i])

    @property
    def lengths(self):
        """``(n,)`` lengths after the cut, from the stored offsets."""
        return np.minimum(self.ids.lengths, self.max_len)


def load_examples(path: str, fmt: str = "tsv", text_column: str = "text", label_column: str = "label",
                  on_error: str = "raise", seed: int = 0, embedded: str = "en"):
    """``({"train", "valid", "test"}: [(text, label)]), labels, policy``; labels sorted, from train.
    ``embedded``: the embedded dataset read when ``path`` is empty (``en`` or ``zh``)."""
    directory = data_dir(path, EMBEDDED[str(embedded)])
    if not directory.is_dir():
        raise DataError(directory, None, "data.path is not a directory")
    policy = ErrorPolicy(on_error)
    splits: dict[str, list[Example]] = {}
    if fmt in ("tsv", "csv"):
        for split, names in SPLIT_NAMES.items():
            f = find_split(directory, names, f".{fmt}")
            if f is not None:
                splits[split] = read_tsv(f, policy) if fmt == "tsv" else read_csv(f, text_column, label_column, policy)
    elif fmt == "imdb":
        for split in ("train", "test"):
            if (directory / split).is_dir():
                splits[split] = read_imdb(directory / split, policy)
    else:
        raise ConfigError(f"data.format={fmt!r}: choose tsv, csv or imdb")
    for split in ("train", "test"):
        if split not in splits:
            raise DataError(directory, None, f"no {split} split in data.format={fmt} layout")
    if "valid" not in splits:
        splits["train"], splits["valid"] = carve(splits["train"], 0.1, seed)
    labels = sorted({ex[1] for ex in splits["train"]})
    if len(labels) < 2:
        raise DataError(directory, None, f"the training data has {len(labels)} label(s); need at least 2")
    known = set(labels)
    clean = {}
    for split, examples in splits.items():
        keep = []
        for text, label, f, line in examples:
            if label not in known:
                policy.bad(f, line, f"label {label!r} does not occur in the training data")
                continue
            keep.append((text, label))
        if not keep:
            raise DataError(directory, None, f"the {split} split has no usable examples")
        clean[split] = keep
    return clean, labels, policy
