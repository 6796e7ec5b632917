"""Reading user data files line by line, with errors that name the file and line.

``on_error=raise`` (default) stops at the first bad line with one clear message; ``on_error=skip``
skips bad lines and counts them (the report shows the count and the first few reasons).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator

from attnapps import provenance
from attnapps.errors import ConfigError, DataError


class ErrorPolicy:
    """Raise on the first bad input line, or skip and count (``mode="skip"``)."""

    def __init__(self, mode: str = "raise"):
        if mode not in ("raise", "skip"):
            raise ConfigError(f"data.on_error={mode!r}: choose raise or skip")
        self.mode, self.skipped, self.examples = mode, 0, []

    def bad(self, path, line: int | None, msg: str) -> None:
        err = DataError(path, line, msg)
        if self.mode == "raise":
            raise err
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))


def embedded(name: str) -> Path:
    """The folder of the embedded default dataset ``name`` (``data/<name>`` in the repository, installed
    as package data of ``attnapps.embedded``). A missing one raises a :class:`DataError` saying where it
    was looked for."""
    from importlib import resources

    try:
        where = Path(str(resources.files("attnapps.embedded") / name))
    except ModuleNotFoundError:
        where = None
    if where is None or not where.is_dir():
        looked = where if where is not None else "the package attnapps.embedded (not installed)"
        raise DataError(looked, None, f"the embedded default dataset '{name}' is missing (data.path is unset, so "
                        "it was looked for here); reinstall attnapps, or set data.path=DIR to your own data")
    return where


def data_dir(path: str, name: str) -> Path:
    """``data.path`` if set (``~`` expanded: a quoted ``'data.path="~/corpus"'`` on the command line, or a
    config built in Python, arrives unexpanded), else the embedded default dataset ``name``."""
    return Path(path).expanduser() if path else embedded(name)


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def check_not_utf16(path: Path, head: bytes) -> None:
    """UTF-16 text (Windows "Unicode" files) is not UTF-8 from its first byte: say so, once."""
    if head.startswith(UTF16_BOMS) or (len(head) >= 4 and head[1:4:2] == b"\0\0" and head[0:4:2] != b"\0\0"):
        raise DataError(path, 1, "the file is UTF-16, not UTF-8 (convert it, e.g. iconv -f UTF-16 -t UTF-8)")


def read_lines(path: str | Path, policy: ErrorPolicy | None = None, record: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a UTF-8 file without line endings (BOM dropped, CRLF or LF);
    a line that is not UTF-8 raises (or is skipped by ``policy``); a UTF-16 file is one clear error.
    The file's SHA-256 goes to the run's provenance unless ``record=False`` (the caller records a
    set of files as one unit)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    policy = policy or ErrorPolicy()
    if record:
        provenance.record_file(path)
    with open(path, "rb") as f:
        check_not_utf16(path, f.read(4))
        f.seek(0)
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                policy.bad(path, number, f"not valid UTF-8 (byte {e.start})")
                continue
            if number == 1:
                text = text.lstrip("\ufeff")
            yield number, text.rstrip("\r\n")


def read_input(path: str, key: str = "input") -> str:
    """Text for ``attnapps.predict``: a UTF-8 file (BOM and CRLF handled), or stdin for ``-``; a
    missing or undecodable file is one error naming the option and the line."""
    import sys

    if path in ("-", ""):
        return sys.stdin.read()
    lines = []
    try:
        for _, line in read_lines(path, record=False):
            lines.append(line)
    except DataError as e:
        raise DataError(path, e.line, f"{key}=: {str(e).split(': ', 1)[-1]}") from None
    return "\n".join(lines)


def write_output(path: str, lines: list[str], key: str = "output") -> None:
    """``attnapps.predict``'s results: one per line to a UTF-8 file, or stdout for ``-``."""
    import sys

    text = "".join(line + "\n" for line in lines)
    if path in ("-", ""):
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{key}={path}: cannot write ({e.strerror})") from None


def find_split(directory: Path, names: list[str], suffix: str) -> Path | None:
    """The first ``directory/<name><suffix>`` that exists (e.g. valid.tsv, val.tsv, dev.tsv)."""
    for name in names:
        p = directory / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def cache_root(path: str | Path = "") -> Path:
    """Where tasks keep derived data (generated datasets, features, encoded corpora): ``path`` if
    given (a task's ``data.cache_dir``), else ``$ATTNAPPS_CACHE``, else ``~/.cache/attnapps``."""
    if path:
        return Path(path)
    return Path(os.environ.get("ATTNAPPS_CACHE") or Path.home() / ".cache" / "attnapps")


SPLIT_NAMES = {"train": ["train"], "valid": ["valid", "val", "dev"],
               "test": ["test", "test_2016_flickr", "test2016", "tst"]}


def carve(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Split off a random ``fraction`` (at least one item) with a fixed seed: ``(rest, carved)``."""
    carved = carve_indices(len(items), fraction, seed)
    return [x for i, x in enumerate(items) if i not in carved], [items[i] for i in sorted(carved)]


def carve_indices(n: int, fraction: float, seed: int) -> set[int]:
    """The positions :func:`carve` splits off ``n`` items (for a corpus read as a stream)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return set(order[:max(1, int(round(fraction * n))) if n > 1 else 0])
