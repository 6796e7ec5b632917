"""Build development sets in Chinese, Japanese, Arabic and nine other languages from the gettext catalogs
(``.mo`` files) of eleven Debian packages: the user-interface strings of GIMP, Inkscape, Evolution,
GnuCash, Gnumeric, Freeciv, Nautilus, GNOME Settings, GTK and GLib with their translations.

    python scripts/build_language_sets.py [--out DIR] [--debs DIR] [--embed]

Writes, under ``OUT`` (default ``$ATTNAPPS_CACHE/languages``):

* ``translation/en-{zh,ja,ar}/{train,valid,test}.tsv`` -- English source string <TAB> its translation
  (zh = zh_CN), deduplicated by source, no source in two splits; 1,000 valid and 1,000 test pairs.
* ``classification/apps-{zh,ja,ar}/{train,valid,test}.tsv`` -- a translated string <TAB> the program it
  comes from (10 labels: gimp, inkscape, evolution, gnucash, gnumeric, freeciv, nautilus, settings, gtk,
  glib); texts that occur with two labels dropped; stratified 80/10/10.
* ``classification/langid/{train,valid,test}.tsv`` -- a translated string <TAB> its language (12 labels:
  ar, de, el, fr, he, hi, ja, ko, ru, th, zh_CN, zh_TW), 2,500 strings per language, the English
  strings split 80/10/10 first so that no English string has translations in two splits.

``--embed`` also writes the small Chinese sets that ship with attnapps (``data.embedded=zh``):
``data/translation_zh/`` (en->zh) and ``data/classification_zh/`` (apps-zh). Every split is seeded (1).
Packages come from ``apt-get download`` (Debian's archive, never a dataset hub) or ``--debs DIR``.
"""

from __future__ import annotations

import argparse
import gettext
import json
import random
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attnapps.data.files import cache_root  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_classification_corpora import dedupe, split  # noqa: E402

PACKAGES = ["gimp", "gimp-data", "inkscape", "evolution-common", "gnucash-common", "gnumeric-common", "freeciv-data",
            "nautilus-data", "gnome-control-center-data", "libgtk-3-common", "libglib2.0-data"]
# catalog (domain) prefix -> the program it belongs to; the time-zone catalog (place names) is left out
PROGRAMS = [("gimp20", "gimp"), ("inkscape", "inkscape"), ("evolution", "evolution"), ("gnucash", "gnucash"),
            ("gnumeric", "gnumeric"), ("freeciv", "freeciv"), ("nautilus", "nautilus"),
            ("gnome-control-center-2.0-timezones", None), ("gnome-control-center", "settings"),
            ("gtk30", "gtk"), ("glib20", "glib")]
TRANSLATION = {"zh": "zh_CN", "ja": "ja", "ar": "ar"}
APPS = {"zh": "zh_CN", "ja": "ja", "ar": "ar"}
LANGID = ["ar", "de", "el", "fr", "he", "hi", "ja", "ko", "ru", "th", "zh_CN", "zh_TW"]
LANGID_PER_LANGUAGE = 2500
MAX_WORDS = 40  # English words; Freeciv's nation histories are whole pages
SKIP = re.compile(r"[%$<>{}\\\n\t]|https?:|@")  # format strings, markup, escapes, links, e-mail addresses
MNEMONIC_PAREN = re.compile(r"\s*[(（]_?[A-Za-z0-9][)）]")  # 一时(_F), 保存（_S）
MNEMONIC = re.compile(r"_(?=\w)")


def program(domain: str) -> str | None:
    for prefix, name in PROGRAMS:
        if domain.startswith(prefix):
            return name
    return None


def clean(text: str) -> str:
    text = MNEMONIC_PAREN.sub("", text)
    text = MNEMONIC.sub("", text.replace("&", "") if "&&" not in text else text)
    return " ".join(text.split()).strip()


def catalogs(root: Path):
    """Yield (language, program, English, translation) for every usable message of every catalog."""
    for mo in sorted(root.glob("**/locale/*/LC_MESSAGES/*.mo")):
        lang, domain = mo.parts[-3], mo.stem
        name = program(domain)
        if name is None:
            continue
        try:
            with mo.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (IndexError, ValueError, OSError) as e:  # a few catalogs have a malformed Plural-Forms header
            print(f"skipped {mo.relative_to(root)}: {type(e).__name__}", file=sys.stderr)
            continue
        for key, value in catalog.items():
            if not isinstance(key, str) or not key or not value:  # plural forms are (msgid, n) keys
                continue
            english = key.split("\x04", 1)[-1]  # msgctxt \x04 msgid
            if SKIP.search(english) or SKIP.search(value):
                continue
            english, value = clean(english), clean(value)
            if english and value and english != value and len(english.split()) <= MAX_WORDS \
                    and re.search(r"[^\W\d_]", value):
                yield lang, name, english, value


def unpack(debs: Path | None, tmp: Path) -> Path:
    if debs is None:
        debs = tmp / "debs"
        debs.mkdir()
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
    root = tmp / "root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def versions(debs_dir: Path) -> list[str]:
    return sorted(p.name for p in debs_dir.glob("*.deb"))


def write_tsv(directory: Path, parts: dict[str, list[tuple[str, str]]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        with (directory / f"{name}.tsv").open("w", encoding="utf-8") as f:
            for a, b in rows:
                f.write(f"{a}\t{b}\n")
    print(directory, {k: len(v) for k, v in parts.items()})


def translation_splits(pairs: dict[str, str], seed: int = 1, held_out: int = 1000):
    sources = sorted(pairs)
    random.Random(seed).shuffle(sources)
    test, valid, train = sources[:held_out], sources[held_out:2 * held_out], sources[2 * held_out:]
    return {"train": [(s, pairs[s]) for s in train], "valid": [(s, pairs[s]) for s in valid],
            "test": [(s, pairs[s]) for s in test]}


def build(messages, out: Path, embed: Path | None):
    by_lang = defaultdict(list)
    for lang, name, english, value in messages:
        by_lang[lang].append((name, english, value))
    for code, lang in TRANSLATION.items():
        pairs: dict[str, str] = {}
        for _, english, value in sorted(by_lang[lang]):
            pairs.setdefault(english, value)  # one translation per English string (the first by program name)
        parts = translation_splits(pairs)
        write_tsv(out / "translation" / f"en-{code}", parts)
        if embed is not None and code == "zh":
            write_tsv(embed / "translation_zh", parts)
    for code, lang in APPS.items():
        parts = split(dedupe([(value, name) for name, _, value in by_lang[lang]]))
        write_tsv(out / "classification" / f"apps-{code}", parts)
        if embed is not None and code == "zh":
            write_tsv(embed / "classification_zh", parts)
    # language identification: split the English strings first, then draw each language's texts per split
    english = sorted({e for lang in LANGID for _, e, _ in by_lang[lang]})
    rng = random.Random(1)
    rng.shuffle(english)
    n = len(english)
    which = {e: "test" if i < n // 10 else "valid" if i < n // 5 else "train" for i, e in enumerate(english)}
    parts = {"train": [], "valid": [], "test": []}
    for lang in LANGID:
        texts = defaultdict(set)
        for _, e, value in by_lang[lang]:
            texts[which[e]].add(value)
        for part, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
            pool = sorted(texts[part])
            rng.shuffle(pool)
            parts[part] += [(t, lang) for t in pool[:round(share * LANGID_PER_LANGUAGE)]]
    seen: dict[str, set] = defaultdict(set)  # a string shared by two languages (a name, a number) is dropped
    for rows in parts.values():
        for t, lang in rows:
            seen[t].add(lang)
    for part in parts:
        parts[part] = [(t, lang) for t, lang in parts[part] if len(seen[t]) == 1]
        rng.shuffle(parts[part])
    write_tsv(out / "classification" / "langid", parts)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="default: $ATTNAPPS_CACHE/languages")
    p.add_argument("--debs", type=Path, default=None, help="a folder with the .deb files (default: apt-get download)")
    p.add_argument("--embed", action="store_true", help="also write data/translation_zh and data/classification_zh")
    args = p.parse_args()
    out = args.out or cache_root() / "languages"
    embed = Path(__file__).resolve().parent.parent / "data" if args.embed else None
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack(args.debs, Path(tmp))
        build(catalogs(root), out, embed)
        debs = args.debs or Path(tmp) / "debs"
        (out / "sources.json").write_text(json.dumps({"packages": versions(debs)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
