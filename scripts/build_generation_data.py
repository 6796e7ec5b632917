"""Rebuild data/generation/ (Jane Austen's six novels) from the Debian package r-cran-janeaustenr.

The package (MIT, Julia Silge; the novels are public domain, from Project Gutenberg) stores the
books as character vectors (one element per line of text) in an R lazy-load database,
``usr/lib/R/site-library/janeaustenr/data/Rdata.{rdx,rdb}``. The ``.rdx`` index is a gzipped R
serialization listing each object's ``(offset, length)`` in the ``.rdb``; each ``.rdb`` record is a
4-byte big-endian length followed by a zlib-compressed R serialization. We read both with the PyPI
package ``rdata`` (a build-time tool only: ``pip install rdata``).

Each novel becomes its lines joined by newlines; the first 90% of each (cut at a paragraph break) goes
to train, the next 5% to valid, the last 5% to test -- contiguous chunks, so no passage is split across
splits. Output: ``{train,valid,test}.txt.gz`` (UTF-8).

    python scripts/build_generation_data.py [--deb PATH]
"""

from __future__ import annotations

import argparse
import gzip
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "generation"
DATA = "usr/lib/R/site-library/janeaustenr/data"
BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]


def fetch_deb(tmp: Path) -> Path:
    subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True)
    return next(tmp.glob("r-cran-janeaustenr_*.deb"))


def read_books(root: Path) -> dict[str, str]:
    import rdata

    index = rdata.read_rds(root / "Rdata.rdx")["variables"]
    db = (root / "Rdata.rdb").read_bytes()
    books = {}
    for name, (offset, length) in index.items():
        record = db[int(offset):int(offset) + int(length)]
        (size,) = struct.unpack(">I", record[:4])
        body = zlib.decompress(record[4:])
        assert len(body) == size, f"{name}: record length {len(body)} != header {size}"
        lines = rdata.conversion.convert(rdata.parser.parse_data(body))
        books[str(name)] = "\n".join(str(x) for x in lines).strip() + "\n"
    return books


def cut(text: str, fraction: float) -> int:
    """The first paragraph break at or after ``fraction`` of ``text``."""
    i = text.find("\n\n", int(len(text) * fraction))
    return len(text) if i < 0 else i + 2


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deb", help="r-cran-janeaustenr .deb (default: apt-get download it)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb = Path(args.deb) if args.deb else fetch_deb(tmp)
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
        books = read_books(tmp / "x" / DATA)
    splits = {"train": [], "valid": [], "test": []}
    for name in BOOKS:
        text = books[name]
        a, b = cut(text, 0.90), cut(text, 0.95)
        splits["train"].append(text[:a])
        splits["valid"].append(text[a:b])
        splits["test"].append(text[b:])
    OUT.mkdir(parents=True, exist_ok=True)
    for split, parts in splits.items():
        text = "\n".join(parts)
        with gzip.GzipFile(OUT / f"{split}.txt.gz", "wb", mtime=0) as f:  # mtime 0: reproducible bytes
            f.write(text.encode("utf-8"))
        print(f"{split}: {len(text):,} characters")


if __name__ == "__main__":
    main()
