"""Pre-LayerNorm Transformer blocks on the core's ``multihead`` attention (Vaswani et al. 2017;
pre-LN as in Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture").

Decoder layers decode incrementally with :class:`~attnapps.attention.KVCache`: one self-attention
cache that grows by one position per step and one static cache of the projected encoder memory.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnapps.attention import KVCache, MultiheadAttention
from attnapps.layers.dropout import Dropout


def dropout_layer(p: float) -> nn.Module:
    """:class:`~attnapps.layers.dropout.Dropout` ``(p)``, or for ``p == 0`` an ``nn.Identity``: the same
    function, without a dropout call per layer in training (a few percent of a small model's step on the CPU)."""
    return Dropout(p) if p > 0 else nn.Identity()


class FeedForward(nn.Sequential):
    """``Linear(d, ff) -> GELU -> dropout -> Linear(ff, d)``."""

    def __init__(self, d_model: int, ff_size: int, dropout: float = 0.0):
        super().__init__(nn.Linear(d_model, ff_size), nn.GELU(), dropout_layer(dropout), nn.Linear(ff_size, d_model))


class EncoderLayer(nn.Module):
    """``x + SA(LN(x))`` then ``x + FF(LN(x))``; ``mask (batch, len)`` True = real token."""

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiheadAttention(d_model, heads=heads, dropout=attn_dropout)
        self.ff = FeedForward(d_model, ff_size, dropout)
        self.drop = dropout_layer(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False,
                cache: KVCache | None = None, need_weights: bool = False):
        h = self.norm1(x)  # (batch, len, d_model)
        a, w = self.attn(h, h, h, mask=mask, is_causal=is_causal, cache=cache, need_weights=need_weights)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.norm2(x)))  # (batch, len, d_model)
        return (x, w) if need_weights else x


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over ``memory``, feed-forward; each pre-LN + residual."""

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiheadAttention(d_model, heads=heads, dropout=attn_dropout)
        self.cross_attn = MultiheadAttention(d_model, heads=heads, dropout=attn_dropout)
        self.ff = FeedForward(d_model, ff_size, dropout)
        self.drop = dropout_layer(dropout)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
                caches: tuple[KVCache, KVCache] | None = None, need_weights: bool = False):
        self_cache, cross_cache = caches if caches is not None else (None, None)
        h = self.norm1(x)  # (batch, tgt_len, d_model)
        x = x + self.drop(self.self_attn(h, h, h, is_causal=True, cache=self_cache)[0])
        h = self.norm2(x)
        a, w = self.cross_attn(h, memory, memory, mask=memory_mask, cache=cross_cache, need_weights=need_weights)
        x = x + self.drop(a)  # w: (batch, heads, tgt_len, src_len)
        x = x + self.drop(self.ff(self.norm3(x)))
        return x, w


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` with a final LayerNorm."""

    def __init__(self, layers: int, d_model: int, heads: int, ff_size: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ff_size, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask=mask, is_causal=is_causal)
        return self.norm(x)  # (batch, len, d_model)


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` with a final LayerNorm; returns the last layer's cross-attention
    weights averaged over heads when asked."""

    def __init__(self, layers: int, d_model: int, heads: int, ff_size: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ff_size, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def new_caches(self) -> list[tuple[KVCache, KVCache]]:
        return [(KVCache(), KVCache(static=True)) for _ in self.layers]

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
                caches: list | None = None, need_weights: bool = False):
        w = None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x, w = layer(x, memory, memory_mask, caches[i] if caches is not None else None,
                         need_weights=need_weights and last)
        weights = w.mean(1) if w is not None else None  # (batch, tgt_len, src_len)
        return self.norm(x), weights
