"""A (bi)directional GRU/LSTM encoder over padded batches."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from attnapps.layers.dropout import Dropout, draws_own_mask, dropout


def unpack(packed: PackedSequence, total_length: int) -> Tensor:
    """``pad_packed_sequence(packed, batch_first=True, total_length=...)[0]`` as one gather.

    Same values; its backward is one scatter instead of one copy per time step, which makes the
    backward pass of long or many sequences several times faster on a CPU.
    """
    data, sizes = packed.data, packed.batch_sizes  # (tokens, hidden), (steps,) on the CPU
    steps, batch = sizes.numel(), int(sizes[0])
    starts = (torch.cumsum(sizes, 0) - sizes).to(data.device)  # first row of each time step
    rows = torch.arange(batch, device=data.device).unsqueeze(1)  # (batch, 1) in sorted order
    index = starts.unsqueeze(0) + rows  # (batch, steps)
    index = torch.where(rows < sizes.to(data.device).unsqueeze(0), index, data.size(0))  # padding -> zero row
    if packed.unsorted_indices is not None:
        index = index[packed.unsorted_indices.to(data.device)]  # back to the input order
    padded = torch.cat([data, data.new_zeros(1, data.size(1))]).index_select(0, index.flatten())
    padded = padded.view(batch, steps, data.size(1))  # (batch, steps, hidden)
    return nn.functional.pad(padded, (0, 0, 0, total_length - steps))  # (batch, total_length, hidden)


def run_rnn(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """A batch-first (bi)directional RNN over padded ``x (batch, len, in)`` that only reads each row's first
    ``lengths`` steps: ``(states (batch, len, out) with zero padding, final state)``."""
    if torch.compiler.is_exporting():  # packed sequences do not trace (ONNX export): the same, unpacked
        return run_unpacked(rnn, x, lengths)
    packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    out, h = rnn(packed)
    return unpack(out, x.size(1)), h


def run_stacked(rnn: nn.LSTM | nn.GRU, x: Tensor, hx=None):
    """``rnn(x, hx)``, the same function, with the dropout between a stacked RNN's layers drawn by
    :mod:`attnapps.layers.dropout` (faster on the CPU) instead of inside PyTorch's RNN kernel.

    In training, on the CPU, for an LSTM or GRU of several layers with ``dropout > 0``, each layer runs as its
    own kernel call (``torch.lstm``/``torch.gru``, what ``nn.LSTM``/``nn.GRU`` call, on that layer's
    parameters) with :func:`~attnapps.layers.dropout.dropout` on its output before the next layer. Anywhere
    else (evaluation, one layer, other devices, packed input, projections, ``trainer.fast_dropout=false``,
    ``torch.compile``) it is ``rnn(x, hx)``. Returns ``(out, h_n)``, or ``(out, (h_n, c_n))`` for an LSTM.
    """
    lstm = isinstance(rnn, nn.LSTM)
    if (not rnn.training or rnn.num_layers == 1 or rnn.dropout == 0 or isinstance(x, PackedSequence)
            or not isinstance(rnn, (nn.LSTM, nn.GRU)) or (lstm and rnn.proj_size > 0) or not draws_own_mask(x)):
        return rnn(x, hx)  # (the kernel's own dropout wherever the core's would be torch's anyway)
    dirs = 2 if rnn.bidirectional else 1
    if hx is None:
        zeros = x.new_zeros(rnn.num_layers * dirs, x.size(0 if rnn.batch_first else 1), rnn.hidden_size)
        hx = (zeros, zeros) if lstm else zeros  # (layers * directions, batch, hidden)
    per_layer = len(rnn._flat_weights) // rnn.num_layers  # (ih, hh[, b_ih, b_hh]) per direction
    hs, cs = [], []
    for k in range(rnn.num_layers):
        if k:
            x = dropout(x, rnn.dropout)  # between layers, as the kernel's own dropout
        weights, rows = rnn._flat_weights[k * per_layer:(k + 1) * per_layer], slice(k * dirs, (k + 1) * dirs)
        if lstm:
            x, h, c = torch.lstm(x, (hx[0][rows], hx[1][rows]), weights, rnn.bias, 1, 0.0, True, rnn.bidirectional,
                                 rnn.batch_first)
            cs.append(c)
        else:
            x, h = torch.gru(x, hx[rows], weights, rnn.bias, 1, 0.0, True, rnn.bidirectional, rnn.batch_first)
        hs.append(h)  # (directions, batch, hidden)
    h_n = torch.cat(hs)  # (layers * directions, batch, hidden)
    return x, ((h_n, torch.cat(cs)) if lstm else h_n)


def rnn_states(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
    """The per-position states of a batch-first RNN over padded ``x (batch, len, in)`` reading only each
    row's first ``lengths`` steps -> ``(batch, len, out)``, zero on padding (the final state is not returned).

    A one-layer bidirectional RNN runs unpacked on ``x`` stacked with a right-aligned copy of ``x``
    (padding first): the forward direction reads the left-aligned rows, the backward direction the
    right-aligned ones, so neither ever reads padding before text. Twice the arithmetic of packing, but
    no per-step bookkeeping: on a CPU as fast at 50 steps and ~17x faster at 800 steps
    (``scripts/bench_classification.py``). Packing (:func:`run_rnn`, also used for other RNNs) stays
    better for many short rows of very different lengths, such as the sentences of a document.
    """
    if not (rnn.bidirectional and rnn.num_layers == 1 and rnn.batch_first):
        return run_rnn(rnn, x, lengths)[0]
    b, n, d = x.shape
    lengths = lengths.to(x.device).clamp(min=1, max=n)
    t = torch.arange(n, device=x.device).unsqueeze(0)  # (1, len)
    shift = (n - lengths).unsqueeze(1)  # (batch, 1): how far each row moves right
    src = t - shift  # position t of the right-aligned copy holds token t - shift
    right = x.gather(1, src.clamp(min=0).unsqueeze(-1).expand(-1, -1, d)) * (src >= 0).unsqueeze(-1)
    out, _ = rnn(torch.cat([x, right]))  # (2 * batch, len, 2 * hidden)
    h = out.size(-1) // 2
    forward = out[:b, :, :h]  # (batch, len, hidden)
    backward = out[b:, :, h:].gather(1, (t + shift).clamp(max=n - 1).unsqueeze(-1).expand(-1, -1, h))
    return torch.cat([forward, backward], -1) * (t < lengths.unsqueeze(1)).unsqueeze(-1)  # (batch, len, 2 * hidden)


def layer_view(rnn: nn.RNNBase, layer: int) -> nn.RNNBase:
    """A one-layer RNN of the same kind whose parameters are layer ``layer`` of ``rnn`` (the same tensors)."""
    size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)
    kind = next(c for c in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(rnn, c))  # not type(): a proxy when tracing
    view = kind(size, rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=True,
                     bidirectional=rnn.bidirectional)
    for name in view._flat_weights_names:  # weight_ih_l0[_reverse] <- weight_ih_l{layer}[_reverse]
        setattr(view, name, getattr(rnn, name.replace("_l0", f"_l{layer}")))
    return view.train(rnn.training)


def run_unpacked(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | tuple[Tensor, None]]:
    """:func:`run_rnn` without packing, which ``torch.export`` (ONNX) cannot trace: layer by layer, the
    forward direction reads the left-aligned rows and the backward direction a right-aligned copy, as in
    :func:`rnn_states`. The same states, and the same final ``h (layers * directions, batch, hidden)``; an
    LSTM's final cell state is not computed (``(h, None)``)."""
    b, n, _ = x.shape
    lengths = lengths.to(x.device).clamp(min=1, max=n)
    t = torch.arange(n, device=x.device).unsqueeze(0)  # (1, len)
    shift = (n - lengths).unsqueeze(1)  # (batch, 1): how far each row moves right
    keep = (t < lengths.unsqueeze(1)).unsqueeze(-1)  # (batch, len, 1)
    last = (lengths - 1).view(b, 1, 1)  # (batch, 1, 1): each row's last position
    finals = []
    for layer in range(rnn.num_layers):
        view = layer_view(rnn, layer)
        d = x.size(-1)
        if not rnn.bidirectional:
            out, _ = view(x)  # (batch, len, hidden)
            finals.append(out.gather(1, last.expand(-1, 1, out.size(-1))).squeeze(1))
        else:
            right = x.gather(1, (t - shift).clamp(min=0).unsqueeze(-1).expand(-1, -1, d)) * (t >= shift).unsqueeze(-1)
            both, _ = view(torch.cat([x, right]))  # (2 * batch, len, 2 * hidden)
            h = both.size(-1) // 2
            forward = both[:b, :, :h]  # (batch, len, hidden)
            backward = both[b:, :, h:].gather(1, (t + shift).clamp(max=n - 1).unsqueeze(-1).expand(-1, -1, h))
            finals += [forward.gather(1, last.expand(-1, 1, h)).squeeze(1), backward[:, 0]]
            out = torch.cat([forward, backward], -1)  # (batch, len, 2 * hidden)
        x = out * keep  # zero padding, the next layer's input
    h_n = torch.stack(finals)  # (layers * directions, batch, hidden)
    return x, ((h_n, None) if isinstance(rnn, nn.LSTM) else h_n)


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
        self.dropout = Dropout(dropout)
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(embed_size, hidden_size // 2 if bidirectional else hidden_size, num_layers=layers,
                           batch_first=True, bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.hidden_size, self.bidirectional = hidden_size, bidirectional

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embedding(ids))  # (batch, len, embed)
        states, h = run_rnn(self.rnn, x, lengths)  # (batch, len, hidden)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
        final = torch.cat([h[-2], h[-1]], -1) if self.bidirectional else h[-1]  # (batch, hidden)
        return states, final
