"""Causal language models: a decoder-only Transformer (GPT) and an LSTM attending to its own past.

One interface for training, scoring and generation:

* ``forward(ids) -> logits (batch, len, vocab)`` -- position t sees tokens <= t only
* ``new_state(batch)`` and ``step(ids, state) -> (logits (batch, new, vocab), state)``: incremental
  decoding with a key/value cache; ``ids (batch, new)`` continues the sequence held in ``state``
  (a prefill when the state is empty). ``state["length"]`` counts the tokens seen.
* ``attention_maps(ids) -> (layers, heads, len, len)``: weights for the report's heatmap
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnapps.attention import KVCache, build_attention, record
from attnapps.config import AttentionVariant, PROBABILITY_OR_AUTO, at_least, choice, opt
from attnapps.layers import Dropout, LearnedPositions, SinusoidalPositions, dropout_layer, run_stacked
from attnapps.layers.transformer import EncoderLayer


Positions = choice("Positions", ["learned", "sinusoidal"])
CONTEXT = opt(128, "tokens the model sees", check=at_least(1))
WIDTH = opt(0, "transformer width / LSTM hidden and embedding size; 0 = the architecture's (its class's defaults)",
            check=at_least(0))
LAYERS = opt(4, "layers (transformer blocks / LSTM layers)", check=at_least(1))
HEADS = opt(4, "attention heads (transformer; lstm_attention with attention=multihead)", check=at_least(1))
DROPOUT = opt(-1.0, "dropout; < 0 = the architecture's (a 6-minute run sees the corpus about twice)",
              check=PROBABILITY_OR_AUTO)
TIE = opt(True, "output layer = token embedding")


@torch.no_grad()
def layer_maps(model: nn.Module, ids: Tensor) -> Tensor:
    """``attention_maps(ids)`` of either model: the weights of every attention module (in call order: the
    layers, bottom up) for one sequence ``ids (1, len)``, as ``(layers, heads, len, len)`` -- a view over
    :func:`attnapps.attention.record`, the one path to weights."""
    with record(model) as maps:
        model(ids)
    return torch.stack([w[0] for w in maps.values()])  # each w: (1, heads, len, len)

@dataclass
class GPTConfig:
    context: int = CONTEXT
    d_model: int = WIDTH
    layers: int = LAYERS
    heads: int = HEADS
    ff_size: int = opt(0, "MLP size; 0 = 4 * d_model", check=at_least(0))
    dropout: float = DROPOUT
    positions: Positions = opt("learned", "position embeddings: learned | sinusoidal")
    tie_weights: bool = TIE


@dataclass
class LSTMAttentionConfig:
    context: int = CONTEXT
    d_model: int = WIDTH
    layers: int = LAYERS
    heads: int = HEADS
    dropout: float = DROPOUT
    tie_weights: bool = TIE
    attention: AttentionVariant = opt("general", "any core variant (additive is memory-hungry: len x len x d)")


class GPT(nn.Module):
    """``GPT(GPTConfig, vocab)``: a pre-LN decoder-only Transformer (Radford et al. 2018/2019): token + position embeddings ->
    ``layers`` x (causal self-attention on the core's ``multihead`` with its SDPA fast path, MLP) ->
    LayerNorm -> logits with the token embedding matrix (weight tying, Press & Wolf 2017)."""

    defaults = {"d_model": 128, "dropout": 0.0}  # model.d_model=0 / model.dropout<0 become these (chosen on valid)
    cpu_bf16 = True  # trainer.precision=auto: bf16 on CPUs with bf16 units (its attention kernel trains in fp32:
    # attnapps.attention.functional.sdpa); 1.6x a step, more updates and lower bpc on valid at equal time

    def explained_attention(self) -> list:
        """The attention whose weights explain the next token (what the diagnostics perturb): the last block's."""
        return [self.blocks[-1].attn]

    def __init__(self, cfg: GPTConfig, vocab: int):
        super().__init__()
        context, d_model, heads, layers, ff_size = cfg.context, cfg.d_model, cfg.heads, cfg.layers, cfg.ff_size
        dropout, positions, tie_weights = cfg.dropout, cfg.positions, cfg.tie_weights
        self.context, self.d_model = context, d_model
        self.embedding = nn.Embedding(vocab, d_model)
        if positions == "learned":
            self.positions = LearnedPositions(d_model, context)
        elif positions == "sinusoidal":
            self.positions = SinusoidalPositions(d_model, context)
        else:
            raise ValueError(f"model.positions={positions!r}: choose learned or sinusoidal")
        self.drop = dropout_layer(dropout)
        self.blocks = nn.ModuleList(EncoderLayer(d_model, heads, ff_size or 4 * d_model, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.apply(self._init)
        if tie_weights:
            self.head.weight = self.embedding.weight
        for name, p in self.named_parameters():  # GPT-2: scaled init of the residual projections
            if name.endswith("attn.out_proj.weight") or name.endswith("ff.3.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def _embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        if offset + ids.size(1) > self.context:
            raise ValueError(f"{offset + ids.size(1)} tokens exceed the model's context {self.context}")
        return self.drop(self.embedding(ids) + self.positions(ids.size(1), offset))  # (batch, len, d_model)

    def forward(self, ids: Tensor) -> Tensor:
        x = self._embed(ids)
        for block in self.blocks:
            x = block(x, is_causal=True)  # (batch, len, d_model)
        return self.head(self.norm(x))  # (batch, len, vocab)

    def new_state(self, batch: int = 1) -> dict:
        return {"caches": [KVCache() for _ in self.blocks], "length": 0}

    def step(self, ids: Tensor, state: dict) -> tuple[Tensor, dict]:
        offset = state["caches"][0].length if state["caches"] else state["length"]  # a size: exports as one
        x = self._embed(ids, offset)  # (batch, new, d_model)
        for block, cache in zip(self.blocks, state["caches"]):
            x = block(x, is_causal=True, cache=cache)
        state["length"] += ids.size(1)
        return self.head(self.norm(x)), state  # (batch, new, vocab)

    attention_maps = layer_maps  # (the one path to weights: attnapps.attention.record)


class LSTMAttentionLM(nn.Module):
    """``LSTMAttentionLM(LSTMAttentionConfig, vocab)``: an LSTM language model that attends over its own previous hidden states (cf. Daniluk et al. 2017,
    "Frustratingly Short Attention Spans"): ``h_t = LSTM(x_<=t)``; ``c_t = attention(h_t, h_<=t)``
    (causal, any core variant); ``logits = W_o tanh(W_c [h_t; c_t])``, tied to the embedding when sizes
    allow. The cache is the LSTM state plus the states attended over (and their key projection)."""

    defaults = {"d_model": 192, "dropout": 0.1}  # model.d_model=0 / model.dropout<0 become these (chosen on valid)
    cpu_bf16 = True  # trainer.precision=auto: bf16 on CPUs with bf16 units (1.62x the updates, lower bpc on valid)

    def explained_attention(self) -> list:
        """The attention whose weights explain the next token (what the diagnostics perturb): over the past states."""
        return [self.attention]

    def __init__(self, cfg: LSTMAttentionConfig, vocab: int):
        super().__init__()
        context, embed_size, hidden_size = cfg.context, cfg.d_model, cfg.d_model
        layers, attention, heads, dropout, tie_weights = cfg.layers, cfg.attention, cfg.heads, cfg.dropout, cfg.tie_weights
        self.context = context
        self.embedding = nn.Embedding(vocab, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.attention = build_attention(attention, hidden_size, hidden_size, heads=heads)
        self.combine = nn.Linear(hidden_size + self.attention.output_size, embed_size)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(embed_size, vocab)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def _out(self, h: Tensor, c: Tensor) -> Tensor:
        return self.head(self.drop(torch.tanh(self.combine(torch.cat([h, c], -1)))))  # (batch, len, vocab)

    def forward(self, ids: Tensor) -> Tensor:
        h, _ = run_stacked(self.lstm, self.drop(self.embedding(ids)))  # (batch, len, hidden); dropout between layers
        c, _ = self.attention(h, h, is_causal=True)  # (batch, len, d_v): position t sees h_<=t
        return self._out(h, c)

    def new_state(self, batch: int = 1) -> dict:
        return {"lstm": None, "h": None, "keys": None, "length": 0}

    def step(self, ids: Tensor, state: dict) -> tuple[Tensor, dict]:
        h, lstm = self.lstm(self.drop(self.embedding(ids)), state["lstm"])  # (batch, new, hidden)
        keys = self.attention.project_keys(h)  # projection of the new states only
        past = state["h"]
        all_h = h if past is None else torch.cat([past, h], 1)  # (batch, length + new, hidden)
        all_k = keys if past is None else torch.cat([state["keys"], keys], 1)
        c, _ = self.attention(h, all_h, projected_keys=all_k, is_causal=True)  # bottom-right causal
        state = {"lstm": lstm, "h": all_h, "keys": all_k, "length": state["length"] + ids.size(1)}
        return self._out(h, c), state

    attention_maps = layer_maps


GPT.config_class, LSTMAttentionLM.config_class = GPTConfig, LSTMAttentionConfig
ARCHS = {"lstm_attention": LSTMAttentionLM, "transformer": GPT}  # model.arch= -> model class
