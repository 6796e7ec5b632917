"""Translation models: an attentional RNN encoder-decoder and a Transformer, each built from its own
config dataclass (``model.arch=rnn`` -> :class:`RNNConfig`, ``transformer`` -> :class:`TransformerConfig`).

* ``forward(src, src_len, tgt_in) -> logits (batch, tgt_len, vocab)`` (teacher forcing; with
  ``model.copy=true``, log-probabilities of the pointer-generator mixture, :class:`CopyOutput`)
* ``encode(src, src_len) -> state`` and ``step(tokens, state) -> (log_probs, state)``: the core's
  :class:`attnapps.decoding.Seq2SeqDecoder`; every tensor in ``state`` is batch-first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnapps.attention import build_attention, lengths_to_mask
from attnapps.config import AttentionVariant, PROBABILITY, at_least, choice, opt
from attnapps.layers import Dropout, OutputLayer, RNNEncoder, SinusoidalPositions, TransformerDecoder, TransformerEncoder
from attnapps.layers.input_feed import input_fed_applies, input_fed_loop

from .lexicon import LexicalBias

Cell = choice("Cell", ["gru", "lstm"])


@dataclass
class Seq2SeqConfig:
    """The keys both architectures have (model_section requires one default per key)."""

    hidden_size: int = opt(256, "RNN hidden size / Transformer d_model", check=at_least(1))
    layers: int = opt(1, "layers of the encoder and of the decoder", check=at_least(1))
    heads: int = opt(4, "attention heads (transformer; rnn with attention=multihead)", check=at_least(1))
    dropout: float = opt(0.2, "dropout probability", check=PROBABILITY)
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy", check=PROBABILITY)
    share_embeddings: bool = opt(True, "tie the source and target embeddings (needs tokenizer.joint)")
    copy: bool = opt(False, "pointer-generator (See et al. 2017): the decoder's attention over the source is also "
                     "a distribution for copying source tokens, mixed with the vocabulary's by a learned gate")
    lexicon: bool = opt(True, "add log(sum_j a_j t(y|x_j) + 0.001) to the logits: IBM Model 1 fitted on the "
                        "training pieces, weighted by the attention (Arthur et al. 2016); chosen on valid (README)")


class CopyOutput(nn.Module):
    """The pointer-generator output layer (See et al. 2017; Gu et al. 2016 is the other classic): the
    attention over the source doubles as a distribution over the source's tokens,

        P(y) = g P_vocab(y) + (1 - g) sum_{j: x_j = y} a_j,      g = sigmoid(w . gate_input + b)

    ``copy_map (src_vocab,)`` is the target id of each source id (the identity with a joint vocabulary;
    a source piece the target vocabulary lacks maps to ``<unk>``). ``forward(logits (.., vocab), weights
    (.., src_len), src_ids (batch, src_len) target ids, gate_input (.., d))`` -> ``(log P (.., vocab),
    P(copy) = 1 - g (..))``; ``..`` is ``batch`` (a decoding step) or ``batch, tgt_len`` (teacher forcing).
    """

    def __init__(self, gate_input: int, copy_map: Tensor):
        super().__init__()
        self.gate = nn.Linear(gate_input, 1)
        self.register_buffer("copy_map", copy_map.long(), persistent=False)  # rebuilt from the tokenizer

    def forward(self, logits: Tensor, weights: Tensor, src_ids: Tensor, gate_input: Tensor) -> tuple[Tensor, Tensor]:
        g = torch.sigmoid(self.gate(gate_input).float())  # (.., 1): P(generate)
        p = g * torch.softmax(logits.float(), -1)  # (.., vocab)
        ids = src_ids if weights.dim() == 2 else src_ids.unsqueeze(1).expand_as(weights)  # (.., src_len)
        p = p.scatter_add(-1, ids, (1 - g) * weights.float())  # padding has weight 0: adds nothing
        return torch.log(p.clamp_min(1e-12)), (1 - g).squeeze(-1)


@dataclass
class RNNConfig(Seq2SeqConfig):
    attention: AttentionVariant = opt("additive", "attention variant of the decoder (any core variant)")
    cell: Cell = opt("gru", "recurrent cell: gru | lstm")
    embed_size: int = opt(256, "token embedding size", check=at_least(1))
    input_feed: bool = opt(True, "feed each step's attentional state a_{t-1} into the next step's RNN input (Luong "
                           "et al. 2015). false: the RNN reads the embeddings alone, so teacher forcing runs the "
                           "RNN over the whole target in one call and attends from every step at once")
    fused_loop: bool = opt(True, "train the input-fed decoder (one-layer GRU, additive attention) through the "
                           "core's loop with its backward written out (attnapps.layers.input_feed): the same "
                           "function in fewer operators, on the CPU; false = autograd through each step's modules")


@dataclass
class TransformerConfig(Seq2SeqConfig):
    ff_size: int = opt(1024, "feed-forward size of each Transformer layer", check=at_least(1))


class SourceOutput:
    """The output layer of both translators: logits, plus (``model.lexicon``) the lexical bias, then
    (``model.copy``) the copy mixture -- both read the decoder's attention weights over the source."""

    copy: CopyOutput | None
    lexicon: LexicalBias | None

    @property
    def reads_weights(self) -> bool:
        """Whether the output needs the attention weights (a copy output or a lexicon)."""
        return self.copy is not None or self.lexicon is not None

    def with_source(self, state: dict, src: Tensor) -> dict:
        """``state`` plus what the output reads of the source: the target ids of the source tokens
        (``copy_ids``) and the source ids (``src``), both ``(batch, src_len)``."""
        if self.copy is not None:
            state["copy_ids"] = self.copy.copy_map[src]
        if self.lexicon is not None:
            state["src"] = src
        return state

    def output_layer(self, logits: Tensor, weights: Tensor, gate_input: Tensor, state: dict) -> tuple[Tensor, Tensor | None]:
        """``logits (batch, [tgt_len,] vocab)``, ``weights (batch, [tgt_len,] src_len)`` -> ``(log-probabilities,
        P(copy) or None)``."""
        if self.lexicon is not None:
            logits = logits.float() + self.lexicon(weights, state["src"])
        if self.copy is None:
            return torch.log_softmax(logits.float(), -1), None
        return self.copy(logits, weights, state["copy_ids"], gate_input)


class RNNSeq2Seq(SourceOutput, nn.Module):
    """``RNNSeq2Seq(RNNConfig, src_vocab, tgt_vocab, shared_vocab)``. Bidirectional GRU/LSTM encoder + attentional decoder with input feeding (Luong et al. 2015),
    any core attention variant (``additive`` = Bahdanau et al. 2015 scores; ``dot``/``general`` = Luong).

    Decoder step t: ``h_t = RNN([emb(y_{t-1}); a_{t-1}], h_{t-1})``; ``c_t, w_t = attn(h_t, enc)``;
    ``a_t = tanh(W_c [c_t; h_t])``; ``P(y_t) = softmax(W_o a_t)``. The key projection of additive and
    general attention is computed once per batch (``project_keys``), not once per step.

    ``model.input_feed=false`` drops ``a_{t-1}`` from the RNN's input (Luong et al.'s model without input
    feeding; OpenNMT-py's ``input_feed 0``): ``h_t`` then depends on the target tokens alone, so teacher
    forcing runs the RNN over the whole target in one call and attends from all its steps in one call
    (:meth:`_parallel`) instead of one :meth:`_decode` per step (:meth:`_loop`); decoding steps as before.
    """

    cpu_bf16 = "output"  # trainer.precision=auto: on a CPU with bf16 units, the output layer in bf16 while training
    # (bf16-output: the step 1.07-1.12x faster; the recurrent and attention steps lose in bf16, 0.92x under autocast)

    def explained_attention(self) -> list:
        """The attention whose weights explain an output token (what the diagnostics perturb): the
        decoder's over the source."""
        return [self.attention]

    def input_embedding(self) -> nn.Embedding:
        """The embedding of the inputs the attention reads (input x gradient saliency)."""
        return self.encoder.embedding

    def __init__(self, cfg: RNNConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool = False, pad_id: int = 0,
                 copy_map: Tensor | None = None, lexicon: dict | None = None):
        super().__init__()
        embed_size, hidden_size, layers, dropout = cfg.embed_size, cfg.hidden_size, cfg.layers, cfg.dropout
        cell, share_embeddings = cfg.cell, cfg.share_embeddings and shared_vocab
        self.cell, self.layers, self.hidden_size, self.input_feed = cell, layers, hidden_size, cfg.input_feed
        self.fused_loop = cfg.fused_loop
        self.encoder = RNNEncoder(src_vocab, embed_size, hidden_size, layers, cell, True, dropout, pad_id)
        self.tgt_embedding = (self.encoder.embedding if share_embeddings
                              else nn.Embedding(tgt_vocab, embed_size, padding_idx=pad_id))
        self.bridge = nn.Linear(hidden_size, hidden_size * layers)
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        feed_size = hidden_size if cfg.input_feed else 0  # a_{t-1} beside the embedding, with input feeding
        self.rnn = rnn_cls(embed_size + feed_size, hidden_size, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.attention = build_attention(cfg.attention, hidden_size, hidden_size, heads=cfg.heads)
        self.combine = nn.Linear(self.attention.output_size + hidden_size, hidden_size)
        self.dropout = Dropout(dropout)
        self.out = OutputLayer(hidden_size, tgt_vocab)  # (nn.Linear; bf16 while training with bf16-output)
        self.copy = (CopyOutput(self.attention.output_size + hidden_size + embed_size, copy_map_for(copy_map, src_vocab))
                     if cfg.copy else None)  # gate input: context, decoder state, input (See et al. 2017)
        self.lexicon = lexical_bias(cfg, lexicon, src_vocab, tgt_vocab)

    def encode(self, src: Tensor, src_len: Tensor) -> dict:
        enc, final = self.encoder(src, src_len)  # (batch, src_len, hidden), (batch, hidden)
        b = src.size(0)
        h0 = torch.tanh(self.bridge(final)).view(b, self.layers, self.hidden_size)  # (batch, layers, hidden)
        state = {"enc": enc, "mask": lengths_to_mask(src_len, src.size(1)),
                 "keys": self.attention.project_keys(enc),  # once per batch
                 "h": h0, "feed": enc.new_zeros(b, self.hidden_size)}
        if self.cell == "lstm":
            state["c"] = torch.zeros_like(h0)
        return self.with_source(state, src)

    def _attend(self, x: Tensor, state: dict):
        """The decoder RNN over ``x (batch, len, input)`` from the state's ``h`` (and ``c``), then the attention
        from each of its outputs and the combination: one step (``len`` 1) or a whole target without input
        feeding. -> ``(a (batch, len, hidden), out (batch, len, hidden), context (batch, len, d_v), weights
        (batch, [heads,] len, src_len) or None, the RNN's new state {"h", ["c"]} batch-first)``."""
        h = state["h"].transpose(0, 1).contiguous()  # (layers, batch, hidden)
        if self.cell == "lstm":
            out, (h, c) = self.rnn(x, (h, state["c"].transpose(0, 1).contiguous()))
            rnn_state = {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}
        else:
            out, h = self.rnn(x, h)  # out: (batch, len, hidden)
            rnn_state = {"h": h.transpose(0, 1)}
        context, w = self.attention(out, state["enc"], mask=state["mask"], need_weights=self.reads_weights,
                                    projected_keys=state["keys"])  # (batch, len, d_v), (batch, [heads,] len, src_len)
        a = torch.tanh(self.combine(torch.cat([context, out], -1)))  # (batch, len, hidden)
        return a, out, context, w, rnn_state

    def _decode(self, emb: Tensor, state: dict):
        """One step. ``emb (batch, embed)`` -> ``(a_t (batch, hidden), state, copy)``; ``copy``: None, or
        with ``model.copy`` the attention weights ``(batch, src_len)`` and the gate's input."""
        x = (torch.cat([emb, state["feed"]], -1) if self.input_feed else emb).unsqueeze(1)  # (batch, 1, embed [+ hidden])
        a, out, context, w, rnn_state = self._attend(x, state)
        a = a.squeeze(1)  # (batch, hidden)
        new = dict(state, feed=a, **rnn_state)
        copy = None
        if self.reads_weights:  # the gate's input only where there is a gate (the lexicon reads the weights alone)
            copy = (self.attention.average_heads(w).squeeze(1),  # (batch, src_len)
                    self._gate_input(context.squeeze(1), out.squeeze(1), emb))  # (batch, d_v + hidden + embed)
        return a, new, copy

    def _gate_input(self, context: Tensor, out: Tensor, emb: Tensor) -> Tensor | None:
        """The copy gate's input (See et al. 2017): context, decoder state and input side by side,
        ``(batch, [len,] d_v + hidden + embed)``; None without a copy gate."""
        return torch.cat([context, out, emb], -1) if self.copy is not None else None

    def teacher_forced(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(logits or, with the copy output, log-probabilities (batch, tgt_len, vocab), P(copy)
        (batch, tgt_len) or None)``."""
        state = self.encode(src, src_len)
        emb = self.dropout(self.tgt_embedding(tgt_in))  # (batch, tgt_len, embed)
        if self.input_feed:
            a, weights, gate_input = self._loop(emb, state)
        else:
            a, weights, gate_input = self._parallel(emb, state)
        logits = self.out(self.dropout(a))  # (batch, tgt_len, vocab)
        if not self.reads_weights:
            return logits, None
        return self.output_layer(logits, weights, gate_input, state)

    def _loop(self, emb: Tensor, state: dict):
        """Input feeding: one :meth:`_decode` per target step. -> ``a (batch, tgt_len, hidden)``, and, as
        the output layer reads them, ``weights (batch, tgt_len, src_len)`` and the copy gate's input. In
        training on the CPU, the default decoder (one-layer GRU, additive attention, no copy gate) runs
        :func:`~attnapps.layers.input_feed.input_fed_loop` instead: the same function."""
        if (self.fused_loop and self.copy is None
                and input_fed_applies(self.rnn, self.attention, self.combine, emb)):
            a, weights = input_fed_loop(emb, state["h"][:, 0], state["enc"], state["keys"], state["mask"], self.rnn,
                                        self.attention, self.combine)  # (batch, tgt_len, hidden), (.., src_len)
            return a, (weights if self.reads_weights else None), None
        outs, copies = [], []
        for e in emb.unbind(1):  # (batch, embed) each; one stack in backward (emb[:, t] would zero-fill and add
            a, state, copy = self._decode(e, state)  # a whole (batch, tgt_len, embed) gradient per step)
            outs.append(a)
            copies.append(copy)
        a = torch.stack(outs, 1)  # (batch, tgt_len, hidden)
        if not self.reads_weights:
            return a, None, None
        weights = torch.stack([c[0] for c in copies], 1)  # (batch, tgt_len, src_len)
        gate_input = torch.stack([c[1] for c in copies], 1) if self.copy is not None else None  # (.., d)
        return a, weights, gate_input

    def _parallel(self, emb: Tensor, state: dict):
        """No input feeding: the same function as ``tgt_len`` calls of :meth:`_decode`, with one RNN call
        over the whole target and one attention call for all its steps (what :meth:`_loop` returns)."""
        a, out, context, w, _ = self._attend(emb, state)  # a, out: (batch, tgt_len, hidden)
        if not self.reads_weights:
            return a, None, None
        return a, self.attention.average_heads(w), self._gate_input(context, out, emb)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        return self.teacher_forced(src, src_len, tgt_in)[0]

    def step(self, tokens: Tensor, state: dict):
        a, state, copy = self._decode(self.tgt_embedding(tokens), state)
        if not self.reads_weights:
            return torch.log_softmax(self.out(a).float(), -1), state  # (batch, vocab)
        return self.output_layer(self.out(a), copy[0], copy[1], state)[0], state


class TransformerSeq2Seq(SourceOutput, nn.Module):
    """``TransformerSeq2Seq(TransformerConfig, src_vocab, tgt_vocab, shared_vocab)``. Pre-LN Transformer encoder-decoder on the core's ``multihead`` attention (Vaswani et al. 2017).

    Sinusoidal positions, embeddings scaled by sqrt(d_model); ``share_embeddings`` ties the source and
    target embeddings (joint vocabulary) and, always, the target embedding with the output layer.
    Decoding is incremental with key/value caches (``step``).
    """

    def explained_attention(self) -> list:
        """The attention whose weights explain an output token (what the diagnostics perturb): the last
        decoder layer's cross-attention."""
        return [self.decoder.layers[-1].cross_attn]

    def input_embedding(self) -> nn.Embedding:
        """The embedding of the inputs the attention reads (input x gradient saliency)."""
        return self.src_embedding

    def __init__(self, cfg: TransformerConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool = True,
                 pad_id: int = 0, copy_map: Tensor | None = None, lexicon: dict | None = None):
        super().__init__()
        d_model, heads, layers, ff_size, dropout = cfg.hidden_size, cfg.heads, cfg.layers, cfg.ff_size, cfg.dropout
        share_embeddings = cfg.share_embeddings and shared_vocab
        self.d_model = d_model
        self.tgt_embedding = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_id)
        self.src_embedding = self.tgt_embedding if share_embeddings else nn.Embedding(src_vocab, d_model, padding_idx=pad_id)
        for emb in {id(self.src_embedding): self.src_embedding, id(self.tgt_embedding): self.tgt_embedding}.values():
            nn.init.normal_(emb.weight, std=d_model ** -0.5)
        self.positions = SinusoidalPositions(d_model)
        self.encoder = TransformerEncoder(layers, d_model, heads, ff_size, dropout)
        self.decoder = TransformerDecoder(layers, d_model, heads, ff_size, dropout)
        self.dropout = Dropout(dropout)
        self.copy = (CopyOutput(2 * d_model, copy_map_for(copy_map, src_vocab)) if cfg.copy
                     else None)  # copies with the last layer's cross-attention (mean of the heads)
        self.lexicon = lexical_bias(cfg, lexicon, src_vocab, tgt_vocab)  # weighted by that attention too

    def _embed(self, emb: nn.Embedding, ids: Tensor, offset: int = 0) -> Tensor:
        x = emb(ids) * math.sqrt(self.d_model) + self.positions(ids.size(1), offset)  # (batch, len, d_model)
        return self.dropout(x)

    def _logits(self, x: Tensor) -> Tensor:
        return x @ self.tgt_embedding.weight.t()  # (batch, len, vocab), tied output layer

    def encode(self, src: Tensor, src_len: Tensor) -> dict:
        mask = lengths_to_mask(src_len, src.size(1))  # (batch, src_len)
        memory = self.encoder(self._embed(self.src_embedding, src), mask=mask)  # (batch, src_len, d_model)
        return self.with_source({"memory": memory, "mask": mask, "caches": self.decoder.new_caches()}, src)

    def teacher_forced(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(logits or, with the copy output, log-probabilities (batch, tgt_len, vocab), P(copy)
        (batch, tgt_len) or None)``."""
        state = self.encode(src, src_len)
        y = self._embed(self.tgt_embedding, tgt_in)  # (batch, tgt_len, d_model)
        x, w = self.decoder(y, state["memory"], state["mask"], need_weights=self.reads_weights)
        if not self.reads_weights:
            return self._logits(x), None
        return self.output_layer(self._logits(x), w, torch.cat([x, y], -1), state)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        return self.teacher_forced(src, src_len, tgt_in)[0]

    def step(self, tokens: Tensor, state: dict):
        offset = state["caches"][0][0].length
        y = self._embed(self.tgt_embedding, tokens.unsqueeze(1), offset)  # (batch, 1, d_model)
        x, w = self.decoder(y, state["memory"], state["mask"], caches=state["caches"],
                            need_weights=self.reads_weights)  # (batch, 1, d_model), (batch, 1, src_len)
        if not self.reads_weights:
            return torch.log_softmax(self._logits(x).squeeze(1).float(), -1), state  # (batch, vocab)
        return self.output_layer(self._logits(x).squeeze(1), w.squeeze(1), torch.cat([x, y], -1).squeeze(1),
                            state)[0], state


def lexical_bias(cfg, lexicon: dict | None, src_vocab: int, tgt_vocab: int) -> LexicalBias | None:
    """With ``model.lexicon``: the lexicon's bias (an empty one until the task fits the lexicon)."""
    if not cfg.lexicon:
        return None
    lexicon = lexicon or {"ids": torch.zeros(src_vocab, 1, dtype=torch.long), "probs": torch.zeros(src_vocab, 1)}
    return LexicalBias(lexicon["ids"], lexicon["probs"], tgt_vocab)


def copy_map_for(copy_map: Tensor | None, src_vocab: int) -> Tensor:
    """The source -> target id map of :class:`CopyOutput` (default: the identity, a joint vocabulary)."""
    return torch.arange(src_vocab) if copy_map is None else copy_map


RNNSeq2Seq.config_class = RNNConfig
TransformerSeq2Seq.config_class = TransformerConfig
ARCHS = {"rnn": RNNSeq2Seq, "transformer": TransformerSeq2Seq}  # model.arch= -> model class
