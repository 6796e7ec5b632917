"""Position encodings: fixed sinusoids (Vaswani et al. 2017) or learned embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalPositions(nn.Module):
    """``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(...)``; grows on demand."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", self._make(max_len), persistent=False)

    def _make(self, n: int) -> Tensor:
        pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # (n, 1)
        div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / self.d_model))
        table = torch.zeros(n, self.d_model)  # (n, d_model)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div[: self.d_model // 2])
        return table

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """``(length, d_model)`` encodings of positions ``offset .. offset + length - 1``."""
        if offset + length > self.table.size(0):
            self.table = self._make(2 * (offset + length)).to(self.table.device)
        return self.table[offset:offset + length]


class LearnedPositions(nn.Module):
    """A learned embedding per position up to ``max_len``."""

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.emb = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        if offset + length > self.emb.num_embeddings:
            raise ValueError(f"sequence of {offset + length} positions exceeds the learned maximum "
                             f"{self.emb.num_embeddings} (raise model.context)")
        return self.emb.weight[offset:offset + length]  # (length, d_model)
