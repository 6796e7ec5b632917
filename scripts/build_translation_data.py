"""Rebuild data/translation/ (English -> German sentence pairs) from Debian's ``trans-de-en``.

The Ding dictionary (Frank Richter, TU Chemnitz; GPL-2+) ships as ``usr/share/trans/de-en`` in the
Debian package ``trans-de-en``: UTF-8 lines ``German :: English``, each side with sub-entries
separated by `` | `` (aligned by position), alternatives separated by ``;`` and ``{...}`` / ``[...]``
annotations. We keep the aligned sub-entries that are whole sentences on both sides (capitalised,
ending in . ? or !, no placeholders such as jdn./etw./sb./sth.), pair alternatives by position
when both sides have as many (else the first of each), strip annotations, dedupe by the English source and split train/valid/test with a fixed seed
(deduping first means no source sentence is in two splits).

    python scripts/build_translation_data.py            # apt-get download + dpkg -x into a temp dir
    python scripts/build_translation_data.py --dict /usr/share/trans/de-en [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "translation"
ANNOTATION = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
PLACEHOLDER = re.compile(r"\b(jdn|jdm|jds|jd|etw|sb|sth|so|sb's|sth's|o\.ä|u\.ä|usw|etc|z\.B|e\.g|i\.e)\b\.?|…|\.\.\.|~|/|\(|\)|\"|<|>|=")
SENTENCE = re.compile(r"^[A-ZÄÖÜ].*[.?!]$")


def fetch_dict(tmp: Path) -> Path:
    subprocess.run(["apt-get", "download", "trans-de-en"], cwd=tmp, check=True)
    deb = next(tmp.glob("trans-de-en_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
    return tmp / "x" / "usr" / "share" / "trans" / "de-en"


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", ANNOTATION.sub("", text)).strip()


def pairs_from_line(line: str):
    if line.startswith("#") or " :: " not in line:
        return
    de, en = line.rstrip("\n").split(" :: ", 1)
    de_parts, en_parts = de.split(" | "), en.split(" | ")
    if len(de_parts) != len(en_parts):
        return
    for d, e in zip(de_parts, en_parts):
        d_alts, e_alts = d.split("; "), e.split("; ")
        if len(d_alts) != len(e_alts):  # alternatives aligned only when both sides have as many
            d_alts, e_alts = d_alts[:1], e_alts[:1]
        for d, e in zip(d_alts, e_alts):
            d, e = clean(d), clean(e)
            if not (SENTENCE.match(d) and SENTENCE.match(e)):
                continue
            if PLACEHOLDER.search(d) or PLACEHOLDER.search(e) or len(e.split()) < 3:
                continue
            yield e, d


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dict", help="path to the de-en file (default: download the Debian package)")
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--max-words", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT, help="where train/valid/test.tsv go (default: data/translation)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dict) if args.dict else fetch_dict(Path(tmp))
        seen, pairs = set(), []
        with open(path, encoding="utf-8") as f:
            for line in f:
                for en, de in pairs_from_line(line):
                    if en in seen or len(en.split()) > args.max_words or len(de.split()) > args.max_words:
                        continue
                    seen.add(en)
                    pairs.append((en, de))
    random.Random(args.seed).shuffle(pairs)
    splits = {"test": pairs[:args.test], "valid": pairs[args.test:args.test + args.valid],
              "train": pairs[args.test + args.valid:]}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(args.out / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.writelines(f"{en}\t{de}\n" for en, de in rows)
    words = sum(len(en.split()) + len(de.split()) for en, de in pairs) / (2 * max(1, len(pairs)))
    print(f"{len(pairs)} pairs (mean {words:.1f} words): " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))


if __name__ == "__main__":
    main()
