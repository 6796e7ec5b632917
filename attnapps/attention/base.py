"""The attention contract every variant follows, and the masked softmax they share.

``forward(query, keys, values=None, mask=None, need_weights=False)``

* ``query``  ``(batch, q_len, d_q)`` -- ``q_len`` may be 1 (one RNN decoder step)
* ``keys``   ``(batch, k_len, d_k)``
* ``values`` ``(batch, k_len, d_v)``, defaults to ``keys``
* ``mask``   bool, True = may attend; ``(batch, k_len)`` or ``(batch, q_len, k_len)``
  (see :mod:`attnapps.attention.masks`)

returns ``(context, weights)``: ``context (batch, q_len, output_size)`` and, only when
``need_weights=True``, ``weights (batch, q_len, k_len)`` (multi-head: ``(batch, heads, q_len, k_len)``).
Whatever the variant, :meth:`Attention.average_heads` gives ``(batch, q_len, k_len)`` and
:meth:`Attention.per_head` ``(batch, heads, q_len, k_len)`` (``heads`` = 1 for single-head variants):
model code never needs to know which variant it holds.
``is_causal=True`` adds a (bottom-right aligned) causal mask to ``mask``.
A query row with no allowed key gets zero weights and a zero context, never NaN.

:func:`intervene` replaces a module's weights by a function of them while values are mixed (the
weights returned stay the model's own): what the permutation diagnostic of :mod:`attnapps.diagnostics`
uses to ask whether the output depends on where the attention goes.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

from attnapps.attention.masks import causal_mask, combine, expand_mask


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` that gives exactly 0 to masked positions and all-zero fully-masked rows.

    Masked scores are filled with the dtype's most negative finite value rather than ``-inf``, so a
    fully-masked row never produces NaN in the forward or the backward pass; multiplying by the mask
    then makes masked weights exactly zero and fully-masked rows zero.

    >>> import torch
    >>> masked_softmax(torch.tensor([[1.0, 1.0, 5.0]]), torch.tensor([[True, True, False]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    >>> masked_softmax(torch.zeros(1, 2), torch.tensor([[False, False]]))   # nothing to attend: zeros, not NaN
    tensor([[0., 0.]])
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask


class Attention(nn.Module):
    """Base class: subclasses implement :meth:`score`; value mixing and masking live here.

    Variants that can precompute a key projection once per source sequence (additive, general)
    override :meth:`project_keys`; a decoding loop calls it once and passes the result to every
    step as ``projected_keys=``.
    """

    output_size: int
    heads: int = 1
    intervention: Callable[[Tensor], Tensor] | None = None  # see intervene()

    def __init__(self, query_size: int, key_size: int, value_size: int | None = None):
        super().__init__()
        self.query_size, self.key_size = query_size, key_size
        self.value_size = key_size if value_size is None else value_size
        self.output_size = self.value_size

    def project_keys(self, keys: Tensor) -> Tensor:
        """Query-independent part of the score, computed once per key sequence (identity by default)."""
        return keys

    def score(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        """``(batch, q_len, d_q)``, projected keys ``(batch, k_len, .)`` -> scores ``(batch, q_len, k_len)``."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
        is_causal: bool = False,
        projected_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        values = keys if values is None else values
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        scores = self.score(query, projected_keys)  # (batch, q_len, k_len)
        mask = expand_mask(mask, query.size(1))  # (batch|1, q_len|1, k_len)
        if is_causal:
            mask = combine(mask, causal_mask(query.size(1), keys.size(1), device=query.device))
        weights = masked_softmax(scores, mask)  # (batch, q_len, k_len)
        mixing = weights if self.intervention is None else self.intervention(weights)
        context = torch.bmm(mixing, values)  # (batch, q_len, d_v)
        return context, (weights if need_weights else None)

    def average_heads(self, weights: Tensor) -> Tensor:
        """This variant's weights as ``(batch, q_len, k_len)`` (multi-head: the mean over heads)."""
        return weights

    def per_head(self, weights: Tensor) -> Tensor:
        """This variant's weights as ``(batch, heads, q_len, k_len)``."""
        return weights.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, value_size={self.value_size}"


@contextlib.contextmanager
def intervene(module: Attention, fn: Callable[[Tensor], Tensor]):
    """Inside, ``module`` mixes its values with ``fn(weights)`` instead of its weights (``weights``
    ``(batch, q_len, k_len)``, multi-head ``(batch, heads, q_len, k_len)``), e.g. the weights permuted
    across keys (Jain & Wallace 2019). Forces the explicit (non-fused) path."""
    module.intervention = fn
    try:
        yield module
    finally:
        module.intervention = None
