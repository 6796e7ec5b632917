"""Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need").

    score(q, k) = q . k / sqrt(d)

Without ``need_weights`` it runs :func:`torch.nn.functional.scaled_dot_product_attention` (memory
linear in length); with it, the explicit path that materialises and returns the weights.
"""

from __future__ import annotations

from torch import Tensor

from attnapps.attention.base import Attention
from attnapps.attention.functional import dot_product_attention
from attnapps.attention.masks import expand_mask
from attnapps.attention.registry import register_attention


@register_attention("scaled_dot")
class ScaledDotAttention(Attention):
    """Parameter-free scaled dot-product attention; ``dropout`` applies to the weights in training."""

    def __init__(self, query_size: int, key_size: int, value_size: int | None = None,
                 dropout: float = 0.0):
        if query_size != key_size:
            raise ValueError(f"scaled_dot attention needs query_size == key_size, got {query_size} and {key_size}")
        super().__init__(query_size, key_size, value_size)
        self.dropout = dropout

    def score(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        return query @ projected_keys.transpose(1, 2) / query.size(-1) ** 0.5  # (batch, q_len, k_len)

    def forward(self, query, keys, values=None, mask=None, need_weights=False, is_causal=False,
                projected_keys=None):
        values = keys if values is None else values
        return dot_product_attention(
            query, keys, values,  # (batch, q_len, d), (batch, k_len, d), (batch, k_len, d_v)
            mask=expand_mask(mask, query.size(1)),  # (batch|1, q_len|1, k_len)
            is_causal=is_causal,
            need_weights=need_weights,
            dropout_p=self.dropout if self.training else 0.0,
            intervention=self.intervention,
        )
