"""A (bi)directional GRU/LSTM encoder over padded batches."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class RNNEncoder(nn.Module):
    """Embeddings -> dropout -> (bi)GRU/LSTM.

    ``forward(ids (batch, len), lengths (batch,))`` -> ``(states (batch, len, hidden_size),
    final (batch, hidden_size))``: the output size is ``hidden_size`` whether or not bidirectional
    (each direction has ``hidden_size // 2``); ``final`` is the last layer's final state of both
    directions, concatenated. Padding positions of ``states`` are zero.
    """

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, layers: int = 1, cell: str = "gru",
                 bidirectional: bool = True, dropout: float = 0.0, pad_id: int = 0,
                 embedding: nn.Embedding | None = None):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be gru or lstm, got {cell!r}")
        if bidirectional and hidden_size % 2:
            raise ValueError("a bidirectional encoder needs an even hidden_size")
        self.embedding = embedding or nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(embed_size, hidden_size // 2 if bidirectional else hidden_size, num_layers=layers,
                           batch_first=True, bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.hidden_size, self.bidirectional = hidden_size, bidirectional

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embedding(ids))  # (batch, len, embed)
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))  # (batch, len, hidden)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
        final = torch.cat([h[-2], h[-1]], -1) if self.bidirectional else h[-1]  # (batch, hidden)
        return states, final
