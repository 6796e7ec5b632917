"""The retrieved memory of Show, Attend and Tell (``model.retrieval_k``): for every image, the captions of
its nearest training images by cosine of mean region features (:mod:`.retrieval`), as token ids the
decoder attends over and copies from. A training image is never its own neighbour. Pixels (an encoder
that trains) have no fixed features to retrieve with, so there is no memory then (the report says so)."""

from __future__ import annotations

import torch

from attnapps.data import pad_batch
from attnapps.data.vocab import EOS

from .retrieval import global_features, neighbours


class RetrievedMemory:
    """Neighbours of every split's images and the index a saved model keeps for new images
    (``index = {"keys": (train, channels) fp16 unit vectors, "captions": token ids per training image}``)."""

    def __init__(self, k: int, captions_per_image: int, max_len: int):
        self.k, self.captions_per_image, self.max_len = k, captions_per_image, max_len
        self.index: dict | None = None
        self.neighbours: dict[str, torch.Tensor] = {}
        self.global_feats: torch.Tensor | None = None

    def build(self, store: torch.Tensor, items: dict, train_captions: list) -> None:
        """``store`` (rows, regions, channels) features [or pixels: nothing to build]; ``items``: split ->
        ``[(row, item)]``; ``train_captions``: token ids per training image."""
        self.neighbours, self.index = {}, None
        if store.dim() != 3:  # pixels: the encoder trains
            return
        g = global_features(store)  # (rows, channels) unit vectors
        self.global_feats = g
        keys = g[torch.tensor([row for row, _ in items["train"]])]  # (train, channels)
        self.index = {"keys": keys.half(), "captions": train_captions}
        depth = max(self.k, 1)
        for split, kept in items.items():
            if not kept:
                self.neighbours[split] = torch.empty(0, depth, dtype=torch.long)
                continue
            rows = torch.tensor([row for row, _ in kept])
            exclude = torch.arange(len(kept)) if split == "train" else None
            self.neighbours[split] = neighbours(g[rows], keys, depth, exclude)  # (n, depth)

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
