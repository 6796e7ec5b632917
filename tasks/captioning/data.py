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

The file is parsed once, when the data is prepared (:func:`write_prepared`): each split's captions go into
the prepared store as token ids and as words, with each image's path, name and (synthetic scenes) objects;
a run reads them by position (:class:`PreparedImages`), never as a list of the whole corpus.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def karpathy_file(root: str | Path) -> tuple[Path, Path]:
    """``(dataset.json, the folder its image paths start from)`` of ``data.path`` (a folder, or the file)."""
    root = Path(root)
    return (root, root.parent) if root.is_file() else (root / "dataset.json", root)


def load_karpathy(root: str | Path, on_error: str = "raise", image_dir: str = "",
                  max_images: int = 0) -> tuple[dict[str, list[ImageItem]], ErrorPolicy]:
    """``({"train", "valid", "test"}: [ImageItem]), policy`` from ``root/dataset.json``.

    ``max_images`` > 0 keeps at most that many images per split (quick experiments)."""
    policy = ErrorPolicy(on_error)
    meta, root = karpathy_file(root)  # data.path=DIR/dataset_flickr8k.json: Karpathy's file under its own name
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
            if isinstance(tokens, list) and tokens:  # a token holding a space is two words
                tokens = [w for t in tokens for w in str(t).lower().split()]
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


def write_prepared(writer, splits: dict[str, list[ImageItem]], root: Path, vocab, max_len: int) -> dict:
    """Each split into the prepared store (:mod:`attnapps.data.prepared`): ``{split}.caps`` (every caption's
    token ids, cut at ``max_len``) and ``{split}.words`` (its words, space-joined) in dataset order,
    ``{split}.first`` (``n + 1``: where each image's captions start), and per image ``{split}.image`` (its
    path from ``root``), ``{split}.name`` and ``{split}.objects`` (JSON, synthetic scenes only). Returns
    the notes a run needs without a pass over the corpus: the training split's most frequent caption."""
    counts: Counter = Counter()
    for split, items in splits.items():
        ids, words = writer.column(f"{split}.caps", len(vocab)), writer.column(f"{split}.words", text=True)
        image, name, objects = (writer.column(f"{split}.{c}", text=True) for c in ("image", "name", "objects"))
        first = array("q", [0])
        for it in items:
            for c in it.captions:
                ids.add(vocab.encode(c[:max_len]))
                words.add(" ".join(c))
                if split == "train":
                    counts[tuple(c)] += 1
            first.append(first[-1] + len(it.captions))
            image.add(it.path.relative_to(root).as_posix())
            name.add(it.name)
            objects.add(json.dumps({"objects": it.objects, "width": it.width, "height": it.height})
                        if it.objects else "")
        for column in (ids, words, image, name, objects):
            column.close()
        writer.array(f"{split}.first", np.frombuffer(first, dtype=np.int64))
    top = max(counts, key=lambda c: (counts[c], c))  # ties: the last in sort order, as before
    return {"top_caption": list(top)}


class PreparedImages(Sequence):
    """A split's images over the prepared store, read by position: ``images[j]`` is ``(row, ImageItem)``
    -- ``row`` the image's row in the feature (or pixel) cache -- built when asked for. ``rows`` and
    ``index`` (the kept images' rows and positions in the split: an image the encoder could not read is
    left out) are arrays; :meth:`ids` / :meth:`words` give one image's captions without the rest."""

    def __init__(self, store, split: str, root: Path, rows=None, index=None):
        self.store, self.split, self.root = store, split, Path(root)
        self.first = np.asarray(store.column(f"{split}.first"))  # (n + 1,)
        self.caps, self.caption_words = store.column(f"{split}.caps"), store.column(f"{split}.words")
        self.images, self.names, self.objects = (store.column(f"{split}.{c}") for c in ("image", "name", "objects"))
        n = len(self.first) - 1
        self.index = np.arange(n) if index is None else np.asarray(index, dtype=np.int64)
        self.rows = self.index if rows is None else np.asarray(rows, dtype=np.int64)

    def kept(self, rows, index) -> "PreparedImages":
        """The same split with only the images at positions ``index``, at feature rows ``rows``."""
        return PreparedImages(self.store, self.split, self.root, rows, index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        return int(self.rows[j]), self.item(j)

    def paths(self) -> list[Path]:
        """Every image's file, in split order (what the feature cache is keyed on and extracts)."""
        return [self.root / p for p in self.images[: len(self.images)]]

    def _span(self, j: int) -> tuple[int, int]:
        k = int(self.index[j])
        return int(self.first[k]), int(self.first[k + 1])

    def ids(self, j: int) -> list[list[int]]:
        """Image ``j``'s captions as token ids."""
        return self.caps[slice(*self._span(j))]

    def words(self, j: int) -> list[list[str]]:
        """Image ``j``'s captions as words (the references the metrics score against)."""
        return [c.split(" ") for c in self.caption_words[slice(*self._span(j))]]

    def name(self, j: int) -> str:
        return self.names[int(self.index[j])]

    def item(self, j: int) -> ImageItem:
        k = int(self.index[j])
        extra = self.objects[k]
        extra = json.loads(extra) if extra else {}
        return ImageItem(self.root / self.images[k], self.names[k], self.words(j), extra.get("objects", []),
                         extra.get("width", 0), extra.get("height", 0))
