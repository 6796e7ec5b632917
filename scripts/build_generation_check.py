"""Build a second English corpus for the generation task, never used to choose its settings: the quotations,
jokes, definitions and verse of BSD ``fortune`` (Debian package ``fortunes``, BSD licence; Ken Arnold and
many contributors), a text of another kind than the novels the default was tuned on.

Every fortune of the package's files (but ``ascii-art``) is one entry; the entries are shuffled with seed 1
and cut 90/5/5, so every file has entries in every split. Entries are separated by a line ``%`` as in
the package's own files.

    python scripts/build_generation_check.py [--deb PATH] [--out DIR]

Writes ``{train,valid,test}.txt`` under ``OUT`` (default ``$ATTNAPPS_CACHE/generation-check/fortunes``), for
``python -m attnapps.run task=generation data.path=OUT``. The package comes from ``apt-get download``
(Debian's archive, never a dataset hub) or ``--deb``.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attnapps.data.files import cache_root  # noqa: E402

FILES = "usr/share/games/fortunes"
LEFT_OUT = {"ascii-art"}  # pictures, not text


def entries(folder: Path) -> list[str]:
    """The fortunes of every file in ``folder`` (``%``-separated), in file order, stripped, empty ones dropped."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or path.suffix in (".dat", ".u8") or path.name in LEFT_OUT or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [e.strip("\n") for e in text.split("\n%\n") if e.strip()]
    return found


def split(items: list[str], seed: int = 1) -> dict[str, list[str]]:
    items = list(items)
    random.Random(seed).shuffle(items)
    a, b = int(len(items) * 0.90), int(len(items) * 0.95)
    return {"train": items[:a], "valid": items[a:b], "test": items[b:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deb", help="the fortunes .deb (default: apt-get download it)")
    p.add_argument("--out", default=str(cache_root() / "generation-check" / "fortunes"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb = Path(args.deb) if args.deb else None
        if deb is None:
            subprocess.run(["apt-get", "download", "fortunes"], cwd=tmp, check=True)
            deb = next(tmp.glob("fortunes_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
        items = entries(tmp / "x" / FILES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in split(items).items():
        text = "\n%\n".join(part) + "\n"
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
        print(f"{name}: {len(part):,} fortunes, {len(text):,} characters -> {out / (name + '.txt')}")


if __name__ == "__main__":
    main()
