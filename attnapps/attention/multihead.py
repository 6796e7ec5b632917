"""Multi-head attention (Vaswani et al. 2017, "Attention Is All You Need", section 3.2.2).

    head_i = softmax((Q W_i^Q)(K W_i^K)^T / sqrt(d_h)) (V W_i^V),   out = concat(head_1..h) W^O

Parameters are laid out like :class:`torch.nn.MultiheadAttention` (``in_proj_weight``/``in_proj_bias``
when query, key and value sizes are equal, else ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``;
``out_proj``), so ``load_state_dict`` takes an ``nn.MultiheadAttention``'s state dict directly.
Differences: batch-first always; masks are True = may attend (``nn.MultiheadAttention``: True =
ignore); weights come back per head ``(batch, heads, q_len, k_len)`` (average over dim 1 for
``nn.MultiheadAttention``'s default) and are the weights before dropout.

Incremental decoding: pass a :class:`KVCache`. A self-attention cache grows by the keys/values of each
call; a ``static`` cache (cross-attention) projects the memory once and reuses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnapps.attention.base import Attention
from attnapps.attention.functional import dot_product_attention
from attnapps.attention.masks import expand_mask
from attnapps.attention.registry import register_attention


class KVCache:
    """Projected keys/values ``(batch, heads, t, head_dim)`` kept between decoding steps.

    ``static=False``: self-attention, each call appends the new positions.
    ``static=True``: cross-attention over a fixed memory, projected on the first call only.
    """

    def __init__(self, static: bool = False, k: Tensor | None = None, v: Tensor | None = None):
        self.static, self.k, self.v = static, k, v

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.size(2)

    @property
    def length(self):
        """The positions held: ``len(cache)``, except that while tracing (ONNX export) it stays a symbolic
        size (``len()`` would turn it into a constant)."""
        return 0 if self.k is None else self.k.size(2)

    def reorder(self, index: Tensor) -> "KVCache":
        """Select batch rows (beam search): returns a new cache with rows ``index``."""
        if self.k is None:
            return KVCache(self.static)
        return KVCache(self.static, self.k.index_select(0, index), self.v.index_select(0, index))


# a pytree node: the ONNX export (attnapps.export.graphs) flattens decoder states holding caches to tensors
torch.utils._pytree.register_pytree_node(KVCache, lambda c: ([c.k, c.v], c.static),
                                         lambda kv, static: KVCache(static, kv[0], kv[1]))


@register_attention("multihead")
class MultiheadAttention(Attention):
    """Multi-head attention with its own projections.

    ``query_size`` is the model width (= output size) and must divide by ``heads``; ``key_size`` and
    ``value_size`` may differ (cross-attention over another modality).
    """

    def __init__(self, query_size: int, key_size: int | None = None, value_size: int | None = None,
                 heads: int = 4, dropout: float = 0.0, bias: bool = True):
        key_size = query_size if key_size is None else key_size
        value_size = key_size if value_size is None else value_size
        super().__init__(query_size, key_size, value_size)
        if query_size % heads:
            raise ValueError(f"multihead attention: query_size {query_size} is not divisible by heads={heads}")
        self.heads, self.head_dim, self.dropout = heads, query_size // heads, dropout
        self.output_size = query_size
        e = query_size
        self.same_size = key_size == e and value_size == e
        if self.same_size:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * e, e))  # [W_q; W_k; W_v]
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(e, e))
            self.k_proj_weight = nn.Parameter(torch.empty(e, key_size))
            self.v_proj_weight = nn.Parameter(torch.empty(e, value_size))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * e)) if bias else None
        self.out_proj = nn.Linear(e, e, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if hasattr(self, name):
                nn.init.xavier_uniform_(getattr(self, name))
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _weights(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.same_size:
            return self.in_proj_weight.chunk(3)
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def _biases(self):
        return (None, None, None) if self.in_proj_bias is None else self.in_proj_bias.chunk(3)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (batch, heads, t, head_dim)

    def project(self, query: Tensor, keys: Tensor, values: Tensor, cache: KVCache | None):
        """Project inputs to per-head q, k, v, using and updating ``cache``."""
        (wq, wk, wv), (bq, bk, bv) = self._weights(), self._biases()
        if cache is not None and cache.static and cache.k is not None:  # memory already projected
            return self._split(F.linear(query, wq, bq)), cache.k, cache.v
        if self.same_size and query is keys and keys is values:  # self-attention: one fused matmul
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q, k, v = F.linear(query, wq, bq), F.linear(keys, wk, bk), F.linear(values, wv, bv)
        q, k, v = self._split(q), self._split(k), self._split(v)  # (batch, heads, len, head_dim)
        if cache is not None:
            if not cache.static and cache.k is not None:
                k = torch.cat([cache.k, k], dim=2)  # (batch, heads, past + len, head_dim)
                v = torch.cat([cache.v, v], dim=2)
            cache.k, cache.v = k, v
        return q, k, v

    def forward(self, query, keys=None, values=None, mask=None, need_weights=False, is_causal=False,
                cache: KVCache | None = None, projected_keys=None):
        keys = query if keys is None else keys
        values = keys if values is None else values
        b, q_len, _ = query.shape
        q, k, v = self.project(query, keys, values, cache)  # (batch, heads, len, head_dim)
        mask = expand_mask(mask, q_len)  # (batch|1, q_len|1, k_len)
        if mask is not None:
            mask = mask.unsqueeze(1)  # (batch|1, 1, q_len|1, k_len) broadcasts over heads
        if is_causal and q_len == 1:
            is_causal = False  # one new query sees its whole past
        context, weights = dot_product_attention(
            q, k, v, mask=mask, is_causal=is_causal, need_weights=need_weights,
            dropout_p=self.dropout if self.training else 0.0, intervention=self.intervention,
        )  # (batch, heads, q_len, head_dim), (batch, heads, q_len, k_len)
        context = context.transpose(1, 2).reshape(b, q_len, self.query_size)  # (batch, q_len, d_model)
        return self.out_proj(context), weights

    def average_heads(self, weights: Tensor) -> Tensor:
        return weights.mean(1)  # (batch, q_len, k_len)

    def per_head(self, weights: Tensor) -> Tensor:
        return weights  # (batch, heads, q_len, k_len)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, heads={self.heads}, dropout={self.dropout}"
