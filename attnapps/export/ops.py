"""Ops that ONNX lacks, written with ones it has: the same results as the torch op they stand in for.

Each uses the torch op normally and its traceable form only while a graph is being exported
(``torch.compiler.is_exporting()``), so training and evaluation keep the fast path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def searchsorted(sorted_keys: Tensor, query: Tensor) -> Tensor:
    """``torch.searchsorted(sorted_keys, query)`` (left side) for a 1-d ``sorted_keys``: the first index
    ``i`` with ``sorted_keys[i] >= query``, per element of ``query``. While exporting: a binary search of
    ``ceil(log2(n + 1))`` fixed steps (gathers and comparisons).

    >>> keys = torch.tensor([2, 5, 5, 9])
    >>> q = torch.tensor([[0, 2, 5], [6, 9, 10]])
    >>> torch.equal(searchsorted(keys, q), binary_search(keys, q)), binary_search(keys, q).tolist()
    (True, [[0, 0, 1], [3, 3, 4]])
    """
    if not torch.compiler.is_exporting():
        return torch.searchsorted(sorted_keys, query)
    return binary_search(sorted_keys, query)


def binary_search(sorted_keys: Tensor, query: Tensor) -> Tensor:
    """The traceable form of :func:`searchsorted`."""
    n = sorted_keys.size(0)
    lo = torch.zeros_like(query)
    hi = torch.full_like(query, n)
    for _ in range(math.ceil(math.log2(n + 1)) if n else 0):  # the interval [lo, hi) halves each time
        mid = (lo + hi) // 2
        right = sorted_keys[mid.clamp(max=max(n - 1, 0))] < query  # the answer is past mid
        active = lo < hi
        lo = torch.where(active & right, mid + 1, lo)
        hi = torch.where(active & ~right, mid, hi)
    return lo
