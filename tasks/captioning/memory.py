"""The retrieved memory of Show, Attend and Tell (``model.retrieval_k``): for every image, the captions of
its nearest training images by cosine of mean region features (:mod:`.retrieval`), as token ids the
decoder attends over and copies from. A training image is never its own neighbour. Pixels (an encoder
that trains) have no fixed features to retrieve with, so there is no memory then (the report says so)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
import torch

from attnapps.data import pad_batch
from attnapps.data.vocab import EOS

from .retrieval import global_features, neighbours


class PackedCaptions(Sequence):
    """Token-id captions of many images in three flat tensors (what a checkpoint keeps of the retrieval
    index: ~4 bytes a token instead of a Python list per caption): ``ids`` ``(tokens,)`` int32 back to back,
    ``caption_ends`` ``(captions,)`` and ``image_ends`` ``(images,)`` cumulative ends. ``packed[j]`` is
    image ``j``'s captions as lists."""

    def __init__(self, ids: torch.Tensor, caption_ends: torch.Tensor, image_ends: torch.Tensor):
        self.ids, self.caption_ends, self.image_ends = ids, caption_ends, image_ends

    @classmethod
    def pack(cls, captions: Sequence) -> "PackedCaptions":
        """From token ids per image (any sequence: read once, image by image)."""
        ids, caption_ends, image_ends = array("i"), array("q"), array("q")
        for caps in captions:
            for c in caps:
                ids.extend(c)
                caption_ends.append(len(ids))
            image_ends.append(len(caption_ends))
        return cls(*(torch.from_numpy(np.frombuffer(a, dtype=np.int32 if a.typecode == "i" else np.int64).copy())
                     for a in (ids, caption_ends, image_ends)))

    @classmethod
    def of(cls, saved) -> Sequence:
        """A checkpoint's ``captions``: the packed tensors, or (checkpoints before them) a list per image."""
        return cls(saved["ids"], saved["caption_ends"], saved["image_ends"]) if isinstance(saved, dict) else saved

    def to_dict(self) -> dict:
        return {"ids": self.ids, "caption_ends": self.caption_ends, "image_ends": self.image_ends}

    def __len__(self) -> int:
        return len(self.image_ends)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        j = j + len(self) if j < 0 else j
        first = int(self.image_ends[j - 1]) if j > 0 else 0
        ends = self.caption_ends[first: int(self.image_ends[j])].tolist()
        starts = [int(self.caption_ends[first - 1]) if first > 0 else 0] + ends[:-1]
        return [self.ids[a:b].tolist() for a, b in zip(starts, ends)]


class RetrievedMemory:
    """Neighbours of every split's images and the index a saved model keeps for new images
    (``index = {"keys": (train, channels) fp16 unit vectors, "captions": token ids per training image}``,
    the captions as :class:`PackedCaptions`)."""

    def __init__(self, k: int, captions_per_image: int, max_len: int):
        self.k, self.captions_per_image, self.max_len = k, captions_per_image, max_len
        self.index: dict | None = None
        self.neighbours: dict[str, torch.Tensor] = {}
        self.global_feats: torch.Tensor | None = None

    def build(self, store: torch.Tensor, rows: dict, train_captions: Sequence) -> None:
        """``store`` (rows, regions, channels) features [or pixels: nothing to build]; ``rows``: split ->
        its images' rows in the store ``(n,)``; ``train_captions``: token ids per training image (packed
        here, read once)."""
        self.neighbours, self.index = {}, None
        if store.dim() != 3:  # pixels: the encoder trains
            return
        g = global_features(store)  # (rows, channels) unit vectors
        self.global_feats = g
        keys = g[rows["train"]]  # (train, channels)
        self.index = {"keys": keys.half(), "captions": PackedCaptions.pack(train_captions)}
        depth = max(self.k, 1)
        for split, split_rows in rows.items():
            if not len(split_rows):
                self.neighbours[split] = torch.empty(0, depth, dtype=torch.long)
                continue
            exclude = torch.arange(len(split_rows)) if split == "train" else None
            self.neighbours[split] = neighbours(g[split_rows], keys, depth, exclude)  # (n, depth)

    def tokens(self, neighbour_ids: list[int]) -> tuple[list[int], list[int]]:
        """``(token ids, rank per token)``: the captions of the given training images (nearest first),
        each closed by ``<eos>`` (copying it ends the caption), cut at ``max_len`` tokens."""
        ids, ranks = [], []
        for rank, j in enumerate(neighbour_ids[: self.k], start=1):
            for cap in self.index["captions"][j][: self.captions_per_image]:
                ids += cap + [EOS]
                ranks += [rank] * (len(cap) + 1)
        return ids[: self.max_len], ranks[: self.max_len]

    def of_example(self, split: str, i: int) -> tuple[list[int], list[int]] | None:
        if self.k <= 0 or self.index is None:
            return None
        return self.tokens(self.neighbours[split][i].tolist())

    def of_features(self, features: torch.Tensor) -> dict:
        """The batch memory of new images from their region features ``(batch, regions, channels)``."""
        if self.index is None:
            return {}
        query = global_features(features)  # (batch, channels)
        near = neighbours(query, self.index["keys"].float(), self.k)  # (batch, k)
        return collate_memory([self.tokens(row.tolist()) for row in near])


def collate_memory(memories: list) -> dict:
    """``memory`` and ``memory_rank`` ``(batch, mem_len)`` padded with 0, or nothing without a memory."""
    if not memories or memories[0] is None:
        return {}
    memory, _ = pad_batch([m[0] for m in memories])
    rank, _ = pad_batch([m[1] for m in memories])
    return {"memory": memory, "memory_rank": rank}
