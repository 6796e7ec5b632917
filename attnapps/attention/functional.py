"""Scaled dot-product attention with one mask convention, a fast path and an explicit path.

The fast path calls :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels: no
``(q_len, k_len)`` matrix is kept for backward); the explicit path builds the weights so they can be
returned. Both give zero context to a query with no allowed key.

On the CPU, a fast path that will be differentiated runs in fp32 even when its inputs are bf16
(autocast) and narrow or short: PyTorch's CPU flash-attention backward in bf16 was 1.3-4.5x slower than
the fp32 one, casts included, for heads of size 32 (up to 512 keys measured) and for up to 128 keys with
heads up to 128 (``scripts/bench_sdpa_precision.py``), enough to make a bf16 Transformer step slower than
an fp32 one. Longer keys with wider heads stay in bf16, where the casts cost as much as the kernel saves
or more; inference stays in low precision everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnapps.attention.base import masked_softmax
from attnapps.attention.masks import causal_mask, combine


FP32_HEAD_UP_TO = 32  # head size up to which the CPU trains the kernel in fp32, at any length
FP32_BACKWARD_UP_TO = (128, 128)  # (keys, head size): up to both, fp32 too


def sdpa(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> Tensor:
    """:func:`torch.nn.functional.scaled_dot_product_attention`, in fp32 on the CPU when its bf16 inputs
    are narrow or short and will be differentiated (see the module's docstring); the output keeps the
    inputs' dtype."""
    if (q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled()  # (fp32: one test)
            and (q.requires_grad or k.requires_grad or v.requires_grad)):
        keys, head = FP32_BACKWARD_UP_TO
        if q.size(-1) <= FP32_HEAD_UP_TO or (k.size(-2) <= keys and q.size(-1) <= head):  # narrow or short
            with torch.autocast("cpu", enabled=False):  # (autocast would send SDPA back to bf16)
                return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


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
        if dropout_p > 0:
            from attnapps.layers.dropout import dropout  # (here: attnapps.layers imports the attention core)
            mixing = dropout(mixing, dropout_p)
        return mixing @ v, (weights if need_weights else None)  # (..., q_len, d_v)

    if is_causal and mask is None and q_len == k_len:
        return sdpa(q, k, v, dropout_p=dropout_p, is_causal=True), None
    if is_causal:  # causal with padding, or a cached suffix of queries: one explicit boolean mask
        mask = combine(mask, causal_mask(q_len, k_len, device=q.device))
    if mask is None:
        return sdpa(q, k, v, dropout_p=dropout_p), None
    row_ok = mask.any(-1, keepdim=True)  # (..., q_len|1, 1)
    if not torch.compiler.is_exporting() and bool(row_ok.all()):  # the usual case: plain SDPA, no extra work
        # in forward or backward (a graph for export takes the general path below: it depends on no value)
        return sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
    # Rows with no allowed key: let them attend everywhere (finite, no NaN in backward), then zero them.
    safe = mask | ~row_ok
    context = sdpa(q, k, v, attn_mask=safe, dropout_p=dropout_p)
    return context.masked_fill(~row_ok, 0.0), None
