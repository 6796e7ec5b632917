"""The shared attention core: one interface, one mask convention (True = may attend), a registry.

>>> import torch
>>> from attnapps.attention import build_attention, lengths_to_mask
>>> attn = build_attention("additive", query_size=8, key_size=6)
>>> query, keys = torch.randn(2, 1, 8), torch.randn(2, 5, 6)      # (batch, q_len, d_q), (batch, k_len, d_k)
>>> mask = lengths_to_mask(torch.tensor([5, 3]))                   # (batch, k_len): True = may attend
>>> context, weights = attn(query, keys, mask=mask, need_weights=True)
>>> context.shape, weights.shape                                   # values default to the keys
(torch.Size([2, 1, 6]), torch.Size([2, 1, 5]))
>>> weights[1, 0, 3:].tolist()                                     # the padding gets exactly nothing
[0.0, 0.0]
>>> torch.allclose(weights.sum(-1), torch.ones(2, 1))               # each query's weights sum to 1
True

Variants: ``additive`` (Bahdanau), ``dot`` and ``general`` (Luong), ``scaled_dot`` and
``multihead`` (Vaswani). See :mod:`attnapps.attention.base` for the contract.
"""

from attnapps.attention.base import Attention, intervene, masked_softmax
from attnapps.attention.masks import causal_mask, combine, expand_mask, invert, lengths_to_mask
from attnapps.attention.registry import build_attention, get_attention_class, list_attention, register_attention
from attnapps.attention.functional import dot_product_attention

# Importing the variant modules registers them.
from attnapps.attention.additive import AdditiveAttention
from attnapps.attention.dot import DotAttention
from attnapps.attention.general import GeneralAttention
from attnapps.attention.scaled_dot import ScaledDotAttention
from attnapps.attention.multihead import KVCache, MultiheadAttention
from attnapps.attention.record import record  # noqa: E402  (the one path to every module's weights)

__all__ = [
    "Attention", "AdditiveAttention", "DotAttention", "GeneralAttention", "ScaledDotAttention",
    "MultiheadAttention", "KVCache", "build_attention", "get_attention_class", "list_attention",
    "register_attention", "intervene", "masked_softmax", "dot_product_attention", "lengths_to_mask", "causal_mask",
    "combine", "expand_mask", "invert", "record",
]
