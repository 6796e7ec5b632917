"""Mask helpers. One convention everywhere in attnapps: boolean masks, **True = may attend**.

Accepted mask shapes for a score tensor ``(batch, q_len, k_len)``:

* ``(batch, k_len)``        key padding mask (same for every query)
* ``(batch, q_len, k_len)`` or ``(1, q_len, k_len)`` full mask (e.g. causal, or causal & padding)

PyTorch APIs differ: ``nn.MultiheadAttention``'s ``key_padding_mask``/``attn_mask`` use True =
*ignore*; :func:`torch.nn.functional.scaled_dot_product_attention` uses True = *attend* like us.
Convert only at such a boundary, with :func:`invert`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(batch,)`` lengths -> ``(batch, max_len)`` bool mask, True on the first ``length`` positions.

    >>> lengths_to_mask(torch.tensor([3, 1]))
    tensor([[ True,  True,  True],
            [ True, False, False]])
    """
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)  # (max_len,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (batch, max_len)


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> Tensor:
    """``(1, q_len, k_len)`` bool mask; query ``i`` may attend keys ``<= i + (k_len - q_len)``.

    Aligned bottom-right, so the last ``q_len`` queries of a sequence of ``k_len`` keys (incremental
    decoding with a key/value cache) see exactly their past.

    >>> causal_mask(2, 3)[0]   # two new queries after one cached key
    tensor([[ True,  True, False],
            [ True,  True,  True]])
    """
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len, device=device).unsqueeze(1) + (k_len - q_len)  # (q_len, 1)
    k_pos = torch.arange(k_len, device=device).unsqueeze(0)  # (1, k_len)
    return (k_pos <= q_pos).unsqueeze(0)  # (1, q_len, k_len)


def expand_mask(mask: Tensor | None, q_len: int) -> Tensor | None:
    """Bring a mask to the 3-D form ``(batch or 1, q_len, k_len)``."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"attention masks are boolean (True = may attend), got {mask.dtype}")
    if mask.dim() == 2:  # (batch, k_len) key padding
        return mask.unsqueeze(1)  # (batch, 1, k_len) broadcasts over queries
    if mask.dim() == 3:
        return mask
    raise ValueError(f"mask must be (batch, k_len) or (batch, q_len, k_len), got {tuple(mask.shape)}")


def combine(mask: Tensor | None, other: Tensor | None) -> Tensor | None:
    """Logical AND of two masks (either may be None)."""
    if mask is None:
        return other
    if other is None:
        return mask
    return mask & other


def invert(mask: Tensor | None) -> Tensor | None:
    """True = may attend  <->  True = ignore (``nn.MultiheadAttention``'s convention)."""
    return None if mask is None else ~mask
