"""Dot-product attention (Luong, Pham & Manning 2015, "Effective Approaches to Attention-based
Neural Machine Translation", the *dot* score).

    score(q, k) = q . k        (query and key sizes must be equal)
"""

from __future__ import annotations

from torch import Tensor

from attnapps.attention.base import Attention
from attnapps.attention.registry import register_attention


@register_attention("dot")
class DotAttention(Attention):
    """Luong *dot* attention; no parameters."""

    def __init__(self, query_size: int, key_size: int, value_size: int | None = None):
        if query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and {key_size};"
                             " use 'general' for different sizes")
        super().__init__(query_size, key_size, value_size)

    def score(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        return query @ projected_keys.transpose(1, 2)  # (batch, q_len, k_len)
