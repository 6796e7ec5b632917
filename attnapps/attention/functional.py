"""Scaled dot-product attention with one mask convention, a fast path and an explicit path.

The fast path calls :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels: no
``(q_len, k_len)`` matrix is kept for backward); the explicit path builds the weights so they can be
returned. Both give zero context to a query with no allowed key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnapps.attention.base import masked_softmax
from attnapps.attention.masks import causal_mask, combine


def dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    need_weights: bool = False,
    dropout_p: float = 0.0,
    intervention=None,
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T / sqrt(d)) v.

    q ``(..., q_len, d)``, k ``(..., k_len, d)``, v ``(..., k_len, d_v)``; ``mask`` bool (True = may
    attend) broadcastable to ``(..., q_len, k_len)``. Returns ``(context (..., q_len, d_v),
    weights (..., q_len, k_len) or None)``; weights are those before dropout. ``intervention``: the
    values are mixed with ``intervention(weights)`` (explicit path; see ``attention.intervene``).
    """
    q_len, k_len = q.size(-2), k.size(-2)
    if need_weights or intervention is not None:
        if is_causal:
            mask = combine(mask, causal_mask(q_len, k_len, device=q.device))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (..., q_len, k_len)
        weights = masked_softmax(scores, mask)  # (..., q_len, k_len)
        mixing = weights if intervention is None else intervention(weights)
        dropped = F.dropout(mixing, dropout_p) if dropout_p > 0 else mixing
        return dropped @ v, (weights if need_weights else None)  # (..., q_len, d_v)

    if is_causal and mask is None and q_len == k_len:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
    if is_causal:  # causal with padding, or a cached suffix of queries: one explicit boolean mask
        mask = combine(mask, causal_mask(q_len, k_len, device=q.device))
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
    row_ok = mask.any(-1, keepdim=True)  # (..., q_len|1, 1)
    if not torch.compiler.is_exporting() and bool(row_ok.all()):  # the usual case: plain SDPA, no extra work
        # in forward or backward (a graph for export takes the general path below: it depends on no value)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
    # Rows with no allowed key: let them attend everywhere (finite, no NaN in backward), then zero them.
    safe = mask | ~row_ok
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout_p)
    return context.masked_fill(~row_ok, 0.0), None
