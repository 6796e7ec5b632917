"""Text classifiers with attention: a BiLSTM with attention pooling or flattened self-attention, and
a small Transformer encoder. Each returns ``(logits, token_weights)``: ``logits (batch, outputs)``
(one logit for two classes, as Keras' ``Dense(1, sigmoid)``; else one per class) and
``token_weights (batch, len)``, how much attention each token got (for explanations).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnapps.attention import build_attention, lengths_to_mask
from attnapps.layers import SinusoidalPositions, TransformerEncoder


class BiLSTMAttention(nn.Module):
    """Embedding -> BiLSTM -> attention -> classifier.

    * ``pooling="attention"`` (default): ``hops`` learned queries attend over the BiLSTM states with any
      core variant (``additive`` default) -> their contexts, concatenated -> dropout -> linear. Several
      hops are the structured self-attentive sentence embedding of Lin et al. 2017.
    * ``pooling="flatten"``: self-attention over the states (``attention="dot"`` is Keras'
      ``Attention()([h, h])``), flattened over a fixed ``max_len`` into a dense layer. With
      embed 128, hidden 64 per direction this is the Keras IMDB example's layout.
    """

    def __init__(self, vocab_size: int, outputs: int, embed_size: int = 128, hidden_size: int = 64,
                 attention: str = "additive", pooling: str = "attention", max_len: int = 200,
                 dropout: float = 0.3, heads: int = 4, pad_id: int = 0, hops: int = 1):
        super().__init__()
        if pooling not in ("attention", "flatten"):
            raise ValueError(f"model.pooling={pooling!r}: choose attention or flatten for bilstm_attention")
        self.pooling, self.max_len = pooling, max_len
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_size, hidden_size, batch_first=True, bidirectional=True)
        d = 2 * hidden_size
        self.attention = build_attention(attention, d, d, heads=heads)
        self.dropout = nn.Dropout(dropout)
        if pooling == "attention":
            self.query = nn.Parameter(torch.randn(1, hops, d) * d ** -0.5)  # (1, hops, 2*hidden)
            self.head = nn.Linear(hops * self.attention.output_size, outputs)
        else:
            self.head = nn.Linear(max_len * self.attention.output_size, outputs)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, n = ids.shape
        mask = lengths_to_mask(lengths, n)  # (batch, len)
        x = self.dropout(self.embedding(ids))  # (batch, len, embed)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=n)  # (batch, len, 2*hidden)
        if self.pooling == "attention":
            query = self.query.expand(b, -1, -1)  # (batch, hops, 2*hidden)
            context, w = self.attention(query, h, mask=mask, need_weights=True)  # (batch, hops, d), weights
            w = w.mean(1) if w.dim() == 4 else w  # multihead: average heads -> (batch, hops, len)
            return self.head(self.dropout(context.flatten(1))), w.mean(1)  # token weights: mean over hops
        context, w = self.attention(h, h, mask=mask, need_weights=True)  # (batch, len, d), (batch, len, len)
        w = w.mean(1) if w.dim() == 4 else w
        context = context * mask.unsqueeze(-1)  # padded rows contribute nothing
        if n < self.max_len:  # fixed width for the dense layer, as Keras pads to maxlen
            context = nn.functional.pad(context, (0, 0, 0, self.max_len - n))
        logits = self.head(self.dropout(context[:, : self.max_len].flatten(1)))  # (batch, outputs)
        received = (w * mask.unsqueeze(-1)).sum(1) / lengths.clamp(min=1).unsqueeze(-1)  # (batch, len)
        return logits, received


class Ensemble(nn.Module):
    """``members`` independently initialised classifiers trained side by side on the same batches.

    In training mode the logits are stacked ``(members, batch, outputs)`` so that each member gets its own
    loss (an ensemble of independent models, not one wide model); in eval mode they are averaged
    ``(batch, outputs)`` -- for softmax/sigmoid outputs, the normalised geometric mean of the members'
    probabilities. Token weights are the members' mean ``(batch, len)``.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        outs = [m(ids, lengths) for m in self.members]
        logits = torch.stack([o[0] for o in outs])  # (members, batch, outputs)
        weights = torch.stack([o[1] for o in outs]).mean(0)  # (batch, len)
        return (logits if self.training else logits.mean(0)), weights


class TransformerClassifier(nn.Module):
    """A small pre-LN Transformer encoder on the core's ``multihead``, mean or [CLS] pooling."""

    def __init__(self, vocab_size: int, outputs: int, d_model: int = 128, heads: int = 4, layers: int = 2,
                 ff_size: int = 256, dropout: float = 0.1, pooling: str = "mean", pad_id: int = 0):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"model.pooling={pooling!r}: choose mean or cls for transformer")
        self.pooling, self.d_model = pooling, d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = SinusoidalPositions(d_model)
        self.encoder = TransformerEncoder(layers, d_model, heads, ff_size, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, outputs)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, n = ids.shape
        x = self.embedding(ids) * self.d_model ** 0.5  # (batch, len, d_model)
        mask = lengths_to_mask(lengths, n)  # (batch, len)
        if self.pooling == "cls":
            x = torch.cat([self.cls.expand(b, 1, -1), x], 1)  # (batch, 1 + len, d_model)
            mask = torch.cat([mask.new_ones(b, 1), mask], 1)
        x = self.dropout(x + self.positions(x.size(1)))
        for layer in self.encoder.layers[:-1]:
            x = layer(x, mask=mask)
        x, w = self.encoder.layers[-1](x, mask=mask, need_weights=True)  # w: (batch, heads, len, len)
        x = self.encoder.norm(x)
        w = w.mean(1)  # (batch, len, len)
        if self.pooling == "cls":
            pooled, token_w = x[:, 0], w[:, 0, 1:]  # what [CLS] attended to
        else:
            m = mask.unsqueeze(-1).float()
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1)  # (batch, d_model)
            token_w = (w * m).sum(1) / m.sum(1).clamp(min=1)  # attention each token received
        return self.head(self.dropout(pooled)), token_w
