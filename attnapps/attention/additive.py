"""Additive attention (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning
to Align and Translate").

    score(q, k) = v^T tanh(W_q q + W_k k + b)

``W_k k`` does not depend on the query: :meth:`project_keys` computes it once per source sequence
and a decoder passes it to each step as ``projected_keys=`` (``scripts/bench_attention.py``
measures what that saves).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnapps.attention.base import Attention
from attnapps.attention.registry import register_attention


@register_attention("additive")
class AdditiveAttention(Attention):
    """Bahdanau attention. ``hidden_size`` is the size of the tanh layer (default: ``query_size``)."""

    def __init__(self, query_size: int, key_size: int, value_size: int | None = None,
                 hidden_size: int | None = None):
        super().__init__(query_size, key_size, value_size)
        hidden_size = hidden_size or query_size
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)  # W_q
        self.key_proj = nn.Linear(key_size, hidden_size, bias=True)  # W_k, b
        self.v = nn.Linear(hidden_size, 1, bias=False)  # v

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (batch, k_len, hidden)

    def score(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        q = self.query_proj(query)  # (batch, q_len, hidden)
        hidden = torch.tanh(q.unsqueeze(2) + projected_keys.unsqueeze(1))  # (batch, q_len, k_len, hidden)
        return self.v(hidden).squeeze(-1)  # (batch, q_len, k_len)
