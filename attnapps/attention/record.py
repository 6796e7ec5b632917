"""``record(model)``: every attention module's weights, per head, from one ordinary forward pass.

>>> import torch
>>> from torch import nn
>>> from attnapps.attention import build_attention, record
>>> class Reader(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.cross_attn = build_attention("dot", query_size=4)
...     def forward(self, queries, keys):
...         return self.cross_attn(queries, keys)
>>> model = Reader()
>>> with record(model) as maps:
...     _ = model(torch.randn(2, 3, 4), torch.randn(2, 5, 4))
>>> maps["cross_attn"].shape   # (batch, heads, q_len, k_len): a single-head variant has heads = 1
torch.Size([2, 1, 3, 5])

Each :class:`~attnapps.attention.Attention` inside ``model`` (found by type, named as in
``model.named_modules()``) hands its weights to the recorder on the explicit path (the one
:func:`~attnapps.attention.intervene` uses), so the model code needs no ``need_weights`` plumbing.
A module called once per decoding step (an RNN decoder, ``q_len`` = 1 each time) gets its calls
concatenated along the query axis. Single-head variants are given ``heads`` = 1. The weights are
the model's own: what it mixed its values with.

A module's ``intervention`` slot is state, so recording is not re-entrant: one forward pass at a time
per model (``attnapps.serve`` serialises inference per model).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from attnapps.attention.base import Attention


class AttentionMaps(dict):
    """``name -> (batch, heads, q_len, k_len)`` tensors, filled when the ``record`` block exits."""


@contextlib.contextmanager
def record(model: nn.Module):
    calls: dict[str, list[Tensor]] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, Attention)]
    for name, module in modules:
        if module.intervention is not None:
            raise RuntimeError(f"{name}: already intervened on (record and intervene do not nest)")

        def keep(weights: Tensor, name=name, module=module) -> Tensor:
            calls.setdefault(name, []).append(module.per_head(weights.detach()))  # (batch, heads, q, k)
            return weights

        module.intervention = keep
    maps = AttentionMaps()
    try:
        yield maps
    finally:
        for _, module in modules:
            module.intervention = None
        for name, parts in calls.items():
            if len({p.shape[-1] for p in parts}) == 1:
                maps[name] = torch.cat(parts, dim=-2)  # (batch, heads, sum of q_len, k_len)
            else:  # keys grew between calls (a key/value cache): keep the last call
                maps[name] = parts[-1]
