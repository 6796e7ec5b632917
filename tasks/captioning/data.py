"""Captioning data in the Karpathy split format (Flickr8k, Flickr30k, COCO) -- used for everything.

``data.path=DIR`` reads ``DIR/dataset.json`` (or ``data.path=DIR/dataset_flickr8k.json``, any name)::

    {"dataset": "flickr8k", "images": [{"filename": "x.jpg", "filepath": "...", "split": "train",
      "sentences": [{"raw": "A dog runs .", "tokens": ["a", "dog", "runs"]}, ...]}, ...]}

An image lives at ``DIR/filepath/filename`` (COCO's ``filepath`` is e.g. ``val2014``), or at
``DIR/images/filename`` when there is no ``filepath`` (Flickr8k's zip unpacks to ``Flicker8k_Dataset/``:
use ``data.image_dir=Flicker8k_Dataset``). ``restval`` counts as train, ``val`` as valid. Captions use
``tokens`` when present, else ``raw`` lower-cased and split into words. A missing image, an entry
without captions or an unknown split raises a :class:`DataError` naming ``dataset.json`` and the
image, or is skipped and counted with ``data.on_error=skip``; unreadable image files are caught the
same way when they are decoded (:mod:`tasks.captioning.features`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from attnapps import provenance
from attnapps.data import scripts
from attnapps.data.files import ErrorPolicy, check_not_utf16
from attnapps.errors import DataError

SPLITS = {"train": "train", "restval": "train", "val": "valid", "valid": "valid", "test": "test"}
def tokenize(text: str) -> list[str]:
    """Lower-cased words without punctuation (the COCO evaluation's PTB tokenizer drops it too), after
    Unicode normalisation; in scripts written without spaces (Chinese, Japanese, Thai) one word per
    character, as sacreBLEU's ``zh`` tokenizer cuts Chinese (:func:`attnapps.data.scripts.split_words`)."""
    return scripts.split_words(scripts.normalize(text).lower(), punctuation=False)


@dataclass
class ImageItem:
    path: Path  # the image file
    name: str  # filename as in dataset.json
    captions: list[list[str]]  # tokenized references
    objects: list[dict] = field(default_factory=list)  # synthetic data only: shape, colour, size, bbox
    width: int = 0  # image size the object boxes refer to (synthetic data)
    height: int = 0


def load_karpathy(root: str | Path, on_error: str = "raise", image_dir: str = "",
                  max_images: int = 0) -> tuple[dict[str, list[ImageItem]], ErrorPolicy]:
    """``({"train", "valid", "test"}: [ImageItem]), policy`` from ``root/dataset.json``.

    ``max_images`` > 0 keeps at most that many images per split (quick experiments)."""
    root = Path(root)
    policy = ErrorPolicy(on_error)
    meta = root / "dataset.json"
    if root.is_file():  # data.path=DIR/dataset_flickr8k.json: Karpathy's file under its own name
        meta, root = root, root.parent
    if not meta.is_file():
        raise DataError(meta, None, "no such file (data.path= must be a folder with the Karpathy-format "
                                    "dataset.json and its images)")
    provenance.record_file(meta)
    try:
        raw = meta.read_bytes()
        check_not_utf16(meta, raw[:4])
        doc = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
    except UnicodeDecodeError as e:
        raise DataError(meta, None, f"not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(meta, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(meta, None, 'expected {"images": [...]} (the Karpathy split format)')
    splits: dict[str, list[ImageItem]] = {"train": [], "valid": [], "test": []}
    for k, entry in enumerate(doc["images"]):
        name = entry.get("filename") if isinstance(entry, dict) else None
        where = f"images[{k}]" + (f" ({name})" if name else "")
        if not name:
            policy.bad(meta, None, f"{where}: no 'filename'")
            continue
        split = SPLITS.get(str(entry.get("split", "")))
        if split is None:
            policy.bad(meta, None, f"{where}: unknown split {entry.get('split')!r} (train, restval, val, test)")
            continue
        caps = []
        sentences = entry.get("sentences") or []
        for s in sentences if isinstance(sentences, list) else []:
            tokens = s.get("tokens") if isinstance(s, dict) else None
            if isinstance(tokens, list) and tokens:
                tokens = [str(t).lower() for t in tokens if str(t).strip()]
            else:
                raw = s.get("raw", "") if isinstance(s, dict) else s
                tokens = tokenize(raw if isinstance(raw, str) else "")
            if tokens:
                caps.append(tokens)
        if not caps:
            policy.bad(meta, None, f"{where}: no captions")
            continue
        folder = image_dir or entry.get("filepath") or "images"
        if not isinstance(name, str) or not isinstance(folder, str):
            policy.bad(meta, None, f"{where}: 'filename' and 'filepath' must be strings")
            continue
        path = root / folder / name
        if not path.is_file():
            policy.bad(meta, None, f"{where}: image file missing: {path}")
            continue
        try:
            width, height = int(entry.get("width") or 0), int(entry.get("height") or 0)
        except (TypeError, ValueError):
            policy.bad(meta, None, f"{where}: 'width'/'height' must be integers")
            continue
        objects = entry.get("objects") or []
        if max_images and len(splits[split]) >= max_images:
            continue
        splits[split].append(ImageItem(path, name, caps, objects if isinstance(objects, list) else [],
                                       width, height))
    provenance.record_files(f"images of {meta.resolve()}", [it.path for items in splits.values() for it in items])
    if not splits["train"]:
        raise DataError(meta, None, "no training images")
    return splits, policy
