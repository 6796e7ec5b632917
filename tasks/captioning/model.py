"""Captioners over a grid of CNN region features: Show, Attend and Tell, and a Transformer decoder.

Both take region features ``feats (batch, regions, feature_dim)`` -- from cached features, or from the
``encoder`` they hold when it trains (``pixels (batch, 3, S, S)``) -- and share one interface:

* ``forward(images, captions_in, owner) -> (logits (n_caps, len, vocab), alphas (n_caps, len, regions))``
  with teacher forcing; caption ``j`` belongs to image ``owner[j]``
* ``encode(images) -> state`` and ``step(tokens, state) -> (log_probs, state, attn (batch, regions))``
  for the core's greedy and beam search (:mod:`attnapps.decoding`)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnapps.attention import build_attention
from attnapps.layers import SinusoidalPositions, TransformerDecoder


class ImageInput(nn.Module):
    """Region features from ``images``: pixels go through ``encoder`` (kept when it trains or for
    prediction from raw images), cached features pass through. Frozen encoders stay in eval mode."""

    def __init__(self, encoder: nn.Module | None, trainable: bool):
        super().__init__()
        self.encoder, self.trainable = encoder, trainable
        if encoder is not None and not trainable:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder is not None and not self.trainable:
            self.encoder.eval()  # frozen BatchNorm statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 4:  # pixels (batch, 3, S, S)
            return self.encoder(images)  # (batch, regions, channels)
        return images.float()  # cached features (batch, regions, channels)


class ShowAttendTell(nn.Module):
    """Xu et al. 2015, soft attention. At step t, with the previous hidden state ``h_{t-1}``::

        alpha_t = attention(h_{t-1}, a)            # over the regions a_i (any core variant)
        z_t     = sigmoid(f_beta(h_{t-1})) * sum_i alpha_ti a_i      # the gating scalar beta
        h_t, c_t = LSTM([E y_{t-1}; z_t], (h_{t-1}, c_{t-1}))
        p(y_t)  = softmax(L_o(dropout(E y_{t-1} + L_h h_t + L_z z_t)))   # the deep output, eq. 7

    ``h_0, c_0`` come from the mean region (``f_init``; ``init_from_mean=False``: zeros, so that what
    the decoder knows of the image comes through attention only). Regions are first projected to
    ``hidden`` so that every variant (``dot`` needs equal sizes) applies, plus (``region_positions``)
    a learned embedding of each region's place in the grid, so that "above"/"left of" can be read
    from where the attention went.
    """

    def __init__(self, vocab: int, feature_dim: int, encoder: nn.Module | None = None, trainable_encoder=False,
                 embed_size: int = 128, hidden_size: int = 256, attention: str = "additive",
                 dropout: float = 0.3, heads: int = 4, pad_id: int = 0, regions: int = 0,
                 init_from_mean: bool = True):
        super().__init__()
        self.images = ImageInput(encoder, trainable_encoder)
        self.hidden_size, self.init_from_mean = hidden_size, init_from_mean
        self.region_pos = nn.Parameter(torch.zeros(1, regions, hidden_size)) if regions else None
        self.project = nn.Sequential(nn.Linear(feature_dim, hidden_size), nn.ReLU())
        self.init_h = nn.Linear(hidden_size, hidden_size)
        self.init_c = nn.Linear(hidden_size, hidden_size)
        self.attention = build_attention(attention, hidden_size, hidden_size, heads=heads)
        self.f_beta = nn.Linear(hidden_size, 1)
        self.embedding = nn.Embedding(vocab, embed_size, padding_idx=pad_id)
        self.cell = nn.LSTMCell(embed_size + self.attention.output_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.L_h = nn.Linear(hidden_size, embed_size)
        self.L_z = nn.Linear(self.attention.output_size, embed_size, bias=False)
        self.out = nn.Linear(embed_size, vocab)

    def encode(self, images: Tensor) -> dict:
        a = self.project(self.images(images))  # (batch, regions, hidden)
        if self.region_pos is not None:
            a = a + self.region_pos[:, : a.size(1)]
        mean = a.mean(1)  # (batch, hidden)
        if not self.init_from_mean:
            mean = torch.zeros_like(mean)
        return {"a": a, "keys": self.attention.project_keys(a),  # key projection once per image
                "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}

    def _step(self, emb: Tensor, state: dict, need_weights: bool = True):
        h = state["h"]  # (batch, hidden)
        z, alpha = self.attention(h.unsqueeze(1), state["a"], need_weights=True,
                                  projected_keys=state["keys"])  # (batch, 1, hidden), (batch, [heads,] 1, R)
        alpha = alpha.mean(1) if alpha.dim() == 4 else alpha  # multihead: average the heads
        z = torch.sigmoid(self.f_beta(h)) * z.squeeze(1)  # (batch, hidden) gated context
        h, c = self.cell(torch.cat([emb, z], -1), (h, state["c"]))  # (batch, hidden)
        deep = emb + self.L_h(h) + self.L_z(z)  # (batch, embed): the deep output's input
        return deep, dict(state, h=h, c=c), alpha.squeeze(1)  # alpha: (batch, regions)

    def forward(self, images: Tensor, captions_in: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
        state = self.encode(images)
        state = {k: v.index_select(0, owner) for k, v in state.items()}  # one row per caption
        emb = self.dropout(self.embedding(captions_in))  # (n_caps, len, embed)
        outs, alphas = [], []
        for t in range(captions_in.size(1)):
            deep, state, alpha = self._step(emb[:, t], state)
            outs.append(deep)
            alphas.append(alpha)
        logits = self.out(self.dropout(torch.stack(outs, 1)))  # (n_caps, len, vocab)
        return logits, torch.stack(alphas, 1)  # (n_caps, len, regions)

    def step(self, tokens: Tensor, state: dict):
        deep, state, alpha = self._step(self.embedding(tokens), state)
        return torch.log_softmax(self.out(deep).float(), -1), state, alpha  # (batch, vocab)


class TransformerCaptioner(nn.Module):
    """A pre-LN Transformer decoder (core ``multihead``) cross-attending to the regions, which get a
    linear projection plus a learned position embedding per region. Tied input/output embeddings;
    incremental decoding with key/value caches. The attention maps returned are the last layer's
    cross-attention, averaged over heads."""

    def __init__(self, vocab: int, feature_dim: int, regions: int, encoder: nn.Module | None = None,
                 trainable_encoder=False, d_model: int = 256, heads: int = 4, layers: int = 2,
                 ff_size: int = 512, dropout: float = 0.1, pad_id: int = 0):
        super().__init__()
        self.images = ImageInput(encoder, trainable_encoder)
        self.d_model = d_model
        self.project = nn.Linear(feature_dim, d_model)
        self.region_pos = nn.Parameter(torch.randn(1, regions, d_model) * 0.02)  # (1, regions, d_model)
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        self.positions = SinusoidalPositions(d_model)
        self.decoder = TransformerDecoder(layers, d_model, heads, ff_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def _memory(self, images: Tensor) -> Tensor:
        feats = self.images(images)  # (batch, regions, feature_dim)
        return self.dropout(self.project(feats) + self.region_pos[:, : feats.size(1)])  # (batch, R, d_model)

    def _embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        x = self.embedding(ids) * math.sqrt(self.d_model) + self.positions(ids.size(1), offset)
        return self.dropout(x)  # (batch, len, d_model)

    def forward(self, images: Tensor, captions_in: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
        memory = self._memory(images).index_select(0, owner)  # (n_caps, R, d_model)
        x, w = self.decoder(self._embed(captions_in), memory, None, need_weights=True)
        return x @ self.embedding.weight.t(), w  # (n_caps, len, vocab), (n_caps, len, R)

    def encode(self, images: Tensor) -> dict:
        return {"memory": self._memory(images), "caches": self.decoder.new_caches()}

    def step(self, tokens: Tensor, state: dict):
        offset = len(state["caches"][0][0])
        x, w = self.decoder(self._embed(tokens.unsqueeze(1), offset), state["memory"], None,
                            caches=state["caches"], need_weights=True)  # (batch, 1, d_model)
        log_probs = torch.log_softmax((x.squeeze(1) @ self.embedding.weight.t()).float(), -1)
        return log_probs, state, w.squeeze(1)  # (batch, vocab), (batch, regions)
