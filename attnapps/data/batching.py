"""Length-bucketed batching with deterministic shuffling, resumable position and DDP sharding."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor


class BucketBatchSampler:
    """Yields lists of dataset indices, one list per (global) batch.

    * ``batch_size`` examples per batch, or, when ``max_tokens > 0``, as many as fit in
      ``max_tokens`` padded tokens (``len(batch) * longest``).
    * With ``lengths``, examples are sorted by length inside chunks of ``100 * batch`` examples so
      batches hold similar lengths (little padding); batch order is shuffled.
    * Shuffling depends only on ``seed + epoch`` (:meth:`set_epoch`), never on the global RNG, so a
      resumed run sees the same batches; ``start_batch`` skips batches already trained on.
    * Under DDP each rank takes its share of every global batch (``indices[rank::world_size]``), so
      the global batch is the same for any number of processes.
    """

    def __init__(self, n: int, batch_size: int, lengths: Sequence[int] | None = None, max_tokens: int = 0,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if batch_size < 1 and max_tokens < 1:
            raise ValueError("need batch_size >= 1 or max_tokens >= 1")
        self.n, self.batch_size, self.max_tokens = n, batch_size, max_tokens
        # (n,) int32 (4 bytes an example); a numpy array (lengths stored with prepared data) without a Python list
        self.lengths = None if lengths is None else torch.tensor(lengths, dtype=torch.int32)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.drop_last = drop_last
        self.epoch, self.start_batch = 0, 0
        self._cache: tuple[int, list[Tensor]] | None = None  # (epoch, its batches): made once per epoch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _batches(self) -> list[Tensor]:
        """The epoch's global batches, as index tensors (computed once per epoch: ``len`` and iteration
        share them). Per example only tensor operations, except the greedy packing of ``max_tokens``."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        order = (torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)).to(torch.int32)
        if self.lengths is not None:
            chunk = max(1, 100 * max(self.batch_size, 1))
            pieces = []
            for start in range(0, self.n, chunk):
                part = order[start:start + chunk]
                pieces.append(part[torch.argsort(self.lengths[part.long()], stable=True)])
            order = torch.cat(pieces) if pieces else order
        if self.max_tokens > 0:
            batches, current, longest = [], [], 0
            lengths = [1] * self.n if self.lengths is None else self.lengths[order.long()].tolist()
            for i, length in zip(order.tolist(), lengths):
                new_longest = max(longest, length)
                if current and new_longest * (len(current) + 1) > self.max_tokens:
                    batches.append(torch.tensor(current))
                    current, new_longest = [], length
                current.append(i)
                longest = new_longest
            if current and not self.drop_last:
                batches.append(torch.tensor(current))
        else:
            batches = list(order.split(self.batch_size))
            if batches and self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
        batches = [b for b in batches if len(b) >= self.world_size]  # every rank needs an example
        if self.shuffle and self.lengths is not None:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[j] for j in perm]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches()[self.start_batch:]:
            yield batch[self.rank::self.world_size].tolist()

    def __len__(self) -> int:
        return max(0, len(self._batches()) - self.start_batch)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0, max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad id sequences -> ``(ids (batch, max_len) long, lengths (batch,) long)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (batch,)
    width = int(lengths.max()) if max_len is None else max_len
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (batch, max_len)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = torch.as_tensor(list(s)[:width], dtype=torch.long)
    return ids, lengths.clamp(max=width)


def to_device(batch, device):
    """Move a batch (tensor, or dict/list/tuple of them) to ``device``; other values pass through."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
