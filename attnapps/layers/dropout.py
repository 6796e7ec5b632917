"""Dropout (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting"),
with a faster mask on the CPU.

In training, each element is zeroed with probability ``p`` and the survivors are scaled by ``1 / (1 - p)``,
so the expected output is the input; in evaluation it is the identity. That is ``nn.Dropout``'s function.

What differs is how the mask is drawn on the CPU. ``torch.nn.functional.dropout`` draws one Bernoulli
sample per element (``bernoulli_``), and its backward multiplies by a boolean mask. On the 2-core
development machine that took 9 ms for a ``(64, 20, 1024)`` activation, and a quarter of the LSTM
language model's training step and of the Transformer translator's. Here each element gets 16 random bits
instead (one 64-bit draw of the CPU generator feeds four elements) and survives when they are at or above
a threshold: about 4x faster forward and 3.5x forward + backward, whose backward is one multiplication by
the saved mask (``scripts/bench_dropout.py``). Below ``SMALLEST`` elements Python's call costs more than
the draw saves, and torch's is used.

The price: ``p`` is rounded to a multiple of 1/65536 (``p = 0.1`` drops 6554/65536 = 0.100006 of the
elements), and the scale is the exact inverse of the rounded keep rate, so the output stays unbiased.
The mask kept for backward is in the input's dtype (4 bytes an element in fp32, where
``nn.Dropout`` keeps 1). The random stream is the CPU's default generator, so ``torch.manual_seed`` and a
checkpoint's saved RNG state reproduce it, but its draws differ from ``nn.Dropout``'s.

Elsewhere (CUDA, MPS), for fewer than ``SMALLEST`` elements, inside ``torch.compile`` (which generates its own dropout), with
``inplace=True``, or after :func:`set_fast` ``(False)`` (``trainer.fast_dropout=false``), it is
``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # the mask compares 16 random bits with a threshold: p is rounded to a multiple of 1/65536
SMALLEST = 4096  # fewer elements: torch's dropout (level at 4,096 in scripts/bench_dropout.py, faster below)
_fast = True


def set_fast(enabled: bool) -> None:
    """Use the 16-bit masks on the CPU (default) or ``torch.nn.functional.dropout`` everywhere."""
    global _fast
    _fast = bool(enabled)


def draws_own_mask(x: Tensor) -> bool:
    """Whether :func:`dropout` draws ``x``'s mask itself (the CPU's 16-bit masks) rather than leaving it to
    torch: on the CPU, for floating-point tensors, outside ``torch.compile``, unless :func:`set_fast` ``(False)``."""
    return _fast and x.device.type == "cpu" and x.is_floating_point() and not torch.compiler.is_compiling()


def keep_rate(p: float) -> float:
    """The share of elements the CPU's mask keeps for a dropout rate ``p``: ``1 - round(p * 65536) / 65536``."""
    return 1.0 - round(p * LEVELS) / LEVELS


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> Tensor:
    """``(shape)`` in ``dtype``: ``1 / keep_rate(p)`` where an element is kept, 0 where it is dropped."""
    n = shape.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)  # all 64 bits uniform
    bits = draws.view(torch.int16)[:n].view(shape)  # 16 uniform bits an element, as -32768 .. 32767
    keep = bits >= round(p * LEVELS) - LEVELS // 2  # P(keep) = keep_rate(p)
    return keep.to(dtype).mul_(1.0 / keep_rate(p))


class _MaskedScale(torch.autograd.Function):
    """``x * mask``, with ``mask`` drawn in forward and kept for backward (``grad * mask``)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        mask = keep_mask(x.shape, p, x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """``torch.nn.functional.dropout``'s function, with the CPU's faster mask (see the module's docstring)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if inplace or keep_rate(p) == 0.0 or x.numel() < SMALLEST or not draws_own_mask(x):
        return F.dropout(x, p, training, inplace)
    return _MaskedScale.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` with the CPU's faster mask (see the module's docstring); the same arguments,
    the same ``state_dict`` (none)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.inplace)
