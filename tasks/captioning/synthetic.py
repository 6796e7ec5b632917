"""The embedded default data: synthetic scenes of 2-4 coloured shapes, written in the Karpathy format.

Each image (128 x 128 PNG) holds 2-4 non-overlapping shapes (circle, square, triangle, diamond) in
one of six colours and two sizes, on a plain or textured (stripes, checks, noise) grey background.
Five reference captions name the objects, their colours, sometimes their sizes, and the spatial
relation of the first two ("a red circle above a small blue square and a green triangle"), each
listing the objects in a different order (left to right, top to bottom, largest first, random).

:func:`ensure_synthetic` writes ``dataset.json`` + ``images/`` into a cache folder on first use,
deterministically from the seed, so the default run reads exactly what a Flickr8k user's run reads.
Each image entry also carries ``objects`` (shape, colour, size, ``bbox`` in pixels), which the task
uses to score attention grounding (a pointing game).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

from attnapps.data.files import cache_root

VERSION = 1
SIZE = 128
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (215, 40, 40), "green": (35, 160, 60), "blue": (40, 80, 225),
           "yellow": (235, 205, 35), "purple": (140, 55, 185), "orange": (245, 135, 25)}
RADIUS = {"small": (12, 15), "large": (20, 25)}  # half-widths in pixels
SPLITS = (("train", 3000), ("val", 250), ("test", 250))


def _relation(a: dict, b: dict) -> str:
    """Where ``a`` is relative to ``b``, along the axis on which they are further apart."""
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    if abs(dy) >= abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


def _phrase(o: dict, size: bool) -> str:
    """``a small red circle`` / ``an orange square``."""
    words = f"{o['size']} {o['colour']} {o['shape']}" if size else f"{o['colour']} {o['shape']}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption(objects: list[dict], size: bool) -> str:
    """``a A <relation> a B [and a C ...]`` for objects in the given order (``an`` before a vowel)."""
    a, b = objects[0], objects[1]
    text = f"{_phrase(a, size)} {_relation(a, b)} {_phrase(b, size)}"
    for o in objects[2:]:
        text += f" and {_phrase(o, size)}"
    return text


def captions(objects: list[dict], rng: random.Random) -> list[str]:
    by_x = sorted(objects, key=lambda o: o["cx"])
    by_y = sorted(objects, key=lambda o: o["cy"])
    by_size = sorted(objects, key=lambda o: (o["size"] != "large", o["cx"]))
    shuffled = objects[:]
    rng.shuffle(shuffled)
    return [caption(by_x, False), caption(by_x, True), caption(by_y, False), caption(by_size, True),
            caption(shuffled, False)]


def _background(draw, rng: random.Random) -> None:
    base = rng.randint(90, 200)
    kind = rng.choice(("plain", "plain", "stripes", "checks", "noise"))
    draw.rectangle([0, 0, SIZE, SIZE], fill=(base, base, base))
    other = base + rng.choice((-30, 30))
    if kind == "stripes":
        step = rng.randint(6, 14)
        for x in range(-SIZE, SIZE, step):
            draw.line([(x, 0), (x + SIZE, SIZE)], fill=(other,) * 3, width=2)
    elif kind == "checks":
        step = rng.randint(8, 16)
        for i in range(0, SIZE, step):
            for j in range(0, SIZE, step):
                if (i // step + j // step) % 2:
                    draw.rectangle([i, j, i + step - 1, j + step - 1], fill=(other,) * 3)
    elif kind == "noise":
        for _ in range(900):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            v = base + rng.randint(-40, 40)
            draw.point((x, y), fill=(v, v, v))


def _draw(draw, o: dict) -> None:
    cx, cy, r, fill = o["cx"], o["cy"], o["r"], COLOURS[o["colour"]]
    if o["shape"] == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif o["shape"] == "square":
        s = int(r * 0.85)
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif o["shape"] == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def scene(rng: random.Random) -> tuple[object, list[dict]]:
    """One image and its objects (``shape, colour, size, cx, cy, r, bbox``)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    _background(draw, rng)
    objects: list[dict] = []
    want = rng.randint(2, 4)
    while len(objects) < want:
        for _ in range(500):  # rejection sampling: no overlaps, a margin between objects
            size = rng.choice(tuple(RADIUS))
            r = rng.randint(*RADIUS[size])
            cx, cy = rng.randint(r + 2, SIZE - r - 3), rng.randint(r + 2, SIZE - r - 3)
            if all((cx - o["cx"]) ** 2 + (cy - o["cy"]) ** 2 > (r + o["r"] + 4) ** 2 for o in objects):
                break
        else:
            break
        taken = {(o["shape"], o["colour"]) for o in objects}
        shape, colour = rng.choice(SHAPES), rng.choice(tuple(COLOURS))
        while (shape, colour) in taken:  # each (colour, shape) once per image: captions stay unambiguous
            shape, colour = rng.choice(SHAPES), rng.choice(tuple(COLOURS))
        o = {"shape": shape, "colour": colour, "size": size, "cx": cx, "cy": cy, "r": r,
             "bbox": [cx - r, cy - r, cx + r, cy + r]}
        _draw(draw, o)
        objects.append(o)
    return image, objects


def write_synthetic(out: Path, seed: int = 0, splits=SPLITS) -> None:
    """Write ``out/dataset.json`` and ``out/images/*.png`` (the Karpathy format plus ``objects``)."""
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, k = [], 0
    for split, count in splits:
        for _ in range(count):
            image, objects = scene(rng)
            name = f"scene_{k:05d}.png"
            image.save(out / "images" / name)
            sents = [{"raw": c, "tokens": c.split()} for c in captions(objects, rng)]
            images.append({"filename": name, "filepath": "images", "split": split, "imgid": k,
                           "sentences": sents, "width": SIZE, "height": SIZE,
                           "objects": [{x: o[x] for x in ("shape", "colour", "size", "bbox")} for o in objects]})
            k += 1
    (out / "dataset.json").write_text(json.dumps({"dataset": "synthetic-shapes", "images": images}))


def ensure_synthetic(cache_dir: str | Path = "", seed: int = 0) -> Path:
    """The synthetic dataset's folder under ``cache_dir``, generated there (atomically) if missing."""
    root = cache_root(cache_dir)
    out = root / "captioning" / f"synthetic-v{VERSION}-seed{seed}"
    if (out / "dataset.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-synthetic-"))
    try:
        write_synthetic(tmp, seed)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "dataset.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
