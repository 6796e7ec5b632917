"""Captioners over a grid of CNN region features: Show, Attend and Tell, and a Transformer decoder.

Both take region features ``feats (batch, regions, feature_dim)`` -- from cached features, or from the
``encoder`` they hold when it trains (``pixels (batch, 3, S, S)``) -- and share one interface:

* ``forward(images, captions_in, owner) -> (logits (n_caps, len, vocab), alphas (n_caps, len, regions))``
  with teacher forcing; caption ``j`` belongs to image ``owner[j]``
* ``encode(images) -> state`` and ``step(tokens, state) -> (log_probs, state)`` for the core's greedy
  and beam search (:mod:`attnapps.decoding`); the decoding attention is recorded
  (``decoding_attention()``, :func:`attnapps.decoding.step_attention`)

Show, Attend and Tell can also read a **retrieved memory** (``memory=True``): the tokens of the captions
of the image's nearest training images (:mod:`tasks.captioning.retrieval`). Both methods then take
``memory (batch, mem_len)`` token ids and ``memory_rank (batch, mem_len)`` (which neighbour each token
came from, 1 = nearest, 0 = padding); ``forward`` returns log-probabilities instead of logits and its
attention (and the recorded decoding attention) is ``(.., regions + mem_len)``: the weights over the
regions, then those over the memory tokens (each part sums to 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnapps.attention import build_attention
from attnapps.config import AttentionVariant, PROBABILITY, at_least, opt
from attnapps.data.vocab import BOS, PAD, UNK
from attnapps.layers import Dropout, SinusoidalPositions, TransformerDecoder, rnn_states


HIDDEN = opt(256, "LSTM size / Transformer d_model", check=at_least(2))
HEADS = opt(4, "attention heads (transformer; show_attend_tell with attention=multihead)", check=at_least(1))
DROPOUT = opt(0.3, "dropout probability", check=PROBABILITY)
SMOOTHING = opt(0.1, "label smoothing of the cross-entropy", check=PROBABILITY)
SCST_AFTER = opt(-1.0, "from this fraction of the budget on, optimise CIDEr-D (self-critical); >= 1 = never; "
                 "-1 = 0.5 over a frozen encoder's features, never when the encoder trains",
                 check=lambda v: None if v == -1 or v >= 0 else "must be -1 (auto) or >= 0")
SCST_SAMPLES = opt(5, "captions sampled per image for the self-critical baseline", check=at_least(2))


@dataclass
class ShowAttendTellConfig:
    attention: AttentionVariant = opt("additive", "attention variant over the regions (any core variant)")
    embed_size: int = opt(128, "word embedding size", check=at_least(1))
    hidden_size: int = HIDDEN
    heads: int = HEADS
    dropout: float = DROPOUT
    doubly_stochastic: float = opt(0.0, "lambda of the doubly stochastic regulariser (the paper: 1; see README)",
                                   check=at_least(0))
    init_from_mean: bool = opt(False, "h0, c0 from the mean region (the paper) or zeros")
    region_positions: bool = opt(True, "add a learned embedding of each region's grid cell")
    retrieval_k: int = opt(8, "attend over (and copy from) the captions of the k nearest training images; 0 = off",
                           check=at_least(0))
    memory_len: int = opt(160, "at most this many retrieved tokens per image", check=at_least(1))
    label_smoothing: float = SMOOTHING
    word_dropout: float = opt(0.1, "fraction of input words replaced by <unk> in training", check=PROBABILITY)
    tie_embeddings: bool = opt(True, "the output layer shares the word embedding")
    scst_after: float = SCST_AFTER
    scst_samples: int = SCST_SAMPLES


@dataclass
class TransformerCaptionerConfig:
    hidden_size: int = HIDDEN
    heads: int = HEADS
    layers: int = opt(2, "Transformer decoder layers", check=at_least(1))
    ff_size: int = opt(512, "feed-forward size of each Transformer layer", check=at_least(1))
    dropout: float = DROPOUT
    label_smoothing: float = SMOOTHING
    scst_after: float = SCST_AFTER
    scst_samples: int = SCST_SAMPLES


def never_special(log_probs: Tensor) -> Tensor:
    """Log-probabilities ``(batch, vocab)`` with ``<pad>``, ``<unk>`` and ``<bos>`` at -inf: decoding never
    outputs them (a word the vocabulary lacks is never silently dropped from a caption). Out of place,
    so self-critical training can backpropagate through it."""
    banned = torch.zeros(log_probs.size(-1), dtype=torch.bool, device=log_probs.device)
    banned[[PAD, UNK, BOS]] = True
    return log_probs.masked_fill(banned, float("-inf"))


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

    With ``memory=True`` the decoder also reads the captions of the nearest training images, in the
    spirit of SmallCap (Ramos et al. 2023) with the copy mechanism of pointer-generator networks (See et
    al. 2017). The memory tokens ``m_j`` are embedded (shared embedding + the neighbour's rank) and read
    by a one-layer BiGRU, so each position knows the words around it -- what lets the decoder copy a
    phrase word after word. After the LSTM step::

        beta_t  = attention'(h_t, m)                 # over the memory tokens (same variant)
        r_t     = sum_j beta_tj m_j
        g_t     = sigmoid(w_g [h_t; r_t; E y_{t-1}])  # generate (g) or copy (1 - g)
        p(y_t)  = g_t softmax(L_o(... + L_r r_t)) + (1 - g_t) sum_{j: m_j = y_t} beta_tj

    so a word of a neighbour's caption can be produced however rare it is in training.
    ``tie_embeddings`` shares the embedding with the output layer; ``word_dropout`` replaces that
    fraction of the input words by ``<unk>`` in training.
    """

    reads_memory, layered = True, False  # retrieved captions as extra keys; one attention, no layers

    def explained_attention(self) -> list:
        """The attention whose weights explain a word (what the diagnostics perturb): over the regions."""
        return [self.attention]

    def decoding_attention(self) -> list:
        """What a decoded word's attention shows (:func:`attnapps.decoding.step_attention`): over the
        regions, then (with the memory) over the retrieved captions' tokens."""
        return [self.attention] + ([self.mem_attention] if self.memory else [])

    def __init__(self, cfg: ShowAttendTellConfig, vocab: int, feature_dim: int, encoder: nn.Module | None = None,
                 trainable_encoder: bool = False, regions: int = 0, memory: bool = False, pad_id: int = 0):
        super().__init__()
        embed_size, hidden_size, attention, dropout, heads = (cfg.embed_size, cfg.hidden_size, cfg.attention,
                                                              cfg.dropout, cfg.heads)
        init_from_mean, tie_embeddings, word_dropout = cfg.init_from_mean, cfg.tie_embeddings, cfg.word_dropout
        regions = regions if cfg.region_positions else 0
        memory_ranks = max(cfg.retrieval_k, 0)
        self.word_dropout = word_dropout
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
        self.dropout = Dropout(dropout)
        self.L_h = nn.Linear(hidden_size, embed_size)
        self.L_z = nn.Linear(self.attention.output_size, embed_size, bias=False)
        self.out = nn.Linear(embed_size, vocab)
        if tie_embeddings:
            self.out.weight = self.embedding.weight  # (vocab, embed) both
        self.memory = memory
        if memory:
            self.mem_rank = nn.Embedding(memory_ranks + 1, embed_size, padding_idx=0)
            self.mem_rnn = nn.GRU(embed_size, hidden_size // 2, batch_first=True, bidirectional=True)
            self.mem_attention = build_attention(attention, hidden_size, 2 * (hidden_size // 2), heads=heads)
            self.L_r = nn.Linear(self.mem_attention.output_size, embed_size, bias=False)
            self.copy_gate = nn.Linear(hidden_size + self.mem_attention.output_size + embed_size, 1)

    def encode(self, images: Tensor, memory: Tensor | None = None, memory_rank: Tensor | None = None) -> dict:
        a = self.project(self.images(images))  # (batch, regions, hidden)
        if self.region_pos is not None:
            a = a + self.region_pos[:, : a.size(1)]
        mean = a.mean(1)  # (batch, hidden)
        if not self.init_from_mean:
            mean = torch.zeros_like(mean)
        state = {"a": a, "keys": self.attention.project_keys(a),  # key projection once per image
                 "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}
        if self.memory:
            if memory is None or memory.size(1) == 0:  # nothing retrieved: one padding slot, never attended
                memory = torch.full((a.size(0), 1), PAD, dtype=torch.long, device=a.device)
                memory_rank = torch.zeros_like(memory)
            x = self.dropout(self.embedding(memory) + self.mem_rank(memory_rank))  # (batch, mem_len, embed)
            m = rnn_states(self.mem_rnn, x, (memory != PAD).sum(1))  # (batch, mem_len, hidden)
            state.update(m=m, m_keys=self.mem_attention.project_keys(m), m_mask=memory != PAD, m_ids=memory)
        return state

    def _step(self, emb: Tensor, state: dict):
        h = state["h"]  # (batch, hidden)
        z, alpha = self.attention(h.unsqueeze(1), state["a"], need_weights=True,
                                  projected_keys=state["keys"])  # (batch, 1, hidden), (batch, [heads,] 1, R)
        alpha = self.attention.average_heads(alpha)  # (batch, 1, R)
        z = torch.sigmoid(self.f_beta(h)) * z.squeeze(1)  # (batch, hidden) gated context
        h, c = self.cell(torch.cat([emb, z], -1), (h, state["c"]))  # (batch, hidden)
        deep = emb + self.L_h(h) + self.L_z(z)  # (batch, embed): the deep output's input
        alpha = alpha.squeeze(1)  # (batch, regions)
        if not self.memory:
            return deep, dict(state, h=h, c=c), alpha, None
        r, beta = self.mem_attention(h.unsqueeze(1), state["m"], mask=state["m_mask"], need_weights=True,
                                     projected_keys=state["m_keys"])  # (batch, 1, hidden), (batch, [heads,] 1, M)
        beta = self.mem_attention.average_heads(beta).squeeze(1)  # (batch, mem_len)
        r = r.squeeze(1)  # (batch, hidden)
        gate = torch.sigmoid(self.copy_gate(torch.cat([h, r, emb], -1)))  # (batch, 1): P(generate)
        return deep + self.L_r(r), dict(state, h=h, c=c), torch.cat([alpha, beta], -1), gate

    def _log_probs(self, deep: Tensor, attn: Tensor, gate: Tensor | None, state: dict) -> Tensor:
        """``deep (.., embed)`` -> log-probabilities ``(.., vocab)``; with the memory, the generated
        distribution mixed with the copy distribution (``gate``, ``attn[..., regions:]``)."""
        logits = self.out(self.dropout(deep)).float()  # (.., vocab)
        if gate is None:
            return torch.log_softmax(logits, -1)
        beta = attn[..., -state["m_ids"].size(1):].float()  # (.., mem_len)
        ids = state["m_ids"]  # (batch, mem_len)
        if beta.dim() == 3:  # teacher forcing: (n_caps, len, mem_len)
            ids = ids.unsqueeze(1).expand_as(beta)
        p = gate.float() * torch.softmax(logits, -1)  # (.., vocab)
        p = p.scatter_add(-1, ids, (1 - gate.float()) * beta)
        return torch.log(p.clamp_min(1e-12))

    def forward(self, images: Tensor, captions_in: Tensor, owner: Tensor, memory: Tensor | None = None,
                memory_rank: Tensor | None = None) -> tuple[Tensor, Tensor]:
        state = self.encode(images, memory, memory_rank)
        state = {k: v.index_select(0, owner) for k, v in state.items()}  # one row per caption
        if self.training and self.word_dropout > 0:  # some input words -> <unk> (never BOS or padding)
            drop = (torch.rand(captions_in.shape, device=captions_in.device) < self.word_dropout) \
                & (captions_in != PAD) & (captions_in != BOS)
            captions_in = captions_in.masked_fill(drop, UNK)
        emb = self.dropout(self.embedding(captions_in))  # (n_caps, len, embed)
        outs, alphas, gates = [], [], []
        for e in emb.unbind(1):  # (n_caps, embed) each: one stack in backward, not a zero-filled gradient per step
            deep, state, alpha, gate = self._step(e, state)
            outs.append(deep)
            alphas.append(alpha)
            gates.append(gate)
        deep, attn = torch.stack(outs, 1), torch.stack(alphas, 1)  # (n_caps, len, embed), (n_caps, len, R [+ M])
        if not self.memory:
            return self.out(self.dropout(deep)), attn  # logits (n_caps, len, vocab)
        return self._log_probs(deep, attn, torch.stack(gates, 1), state), attn  # log-probs (n_caps, len, vocab)

    def step(self, tokens: Tensor, state: dict):
        deep, state, attn, gate = self._step(self.embedding(tokens), state)
        log_probs = self._log_probs(deep, attn, gate, state)  # (batch, vocab)
        return never_special(log_probs), state


class TransformerCaptioner(nn.Module):
    """A pre-LN Transformer decoder (core ``multihead``) cross-attending to the regions, which get a
    linear projection plus a learned position embedding per region. Tied input/output embeddings;
    incremental decoding with key/value caches. The attention maps returned are the last layer's
    cross-attention, averaged over heads."""

    reads_memory, layered = False, True  # no retrieved captions; per-layer attention to show

    def explained_attention(self) -> list:
        """The attention whose weights explain a word (what the diagnostics perturb): the last layer's
        cross-attention."""
        return [self.decoder.layers[-1].cross_attn]

    def __init__(self, cfg: TransformerCaptionerConfig, vocab: int, feature_dim: int, encoder: nn.Module | None = None,
                 trainable_encoder: bool = False, regions: int = 0, memory: bool = False, pad_id: int = 0):
        super().__init__()
        d_model, heads, layers, ff_size, dropout = cfg.hidden_size, cfg.heads, cfg.layers, cfg.ff_size, cfg.dropout
        self.images = ImageInput(encoder, trainable_encoder)
        self.d_model = d_model
        self.project = nn.Linear(feature_dim, d_model)
        self.region_pos = nn.Parameter(torch.randn(1, regions, d_model) * 0.02)  # (1, regions, d_model)
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        self.positions = SinusoidalPositions(d_model)
        self.decoder = TransformerDecoder(layers, d_model, heads, ff_size, dropout)
        self.dropout = Dropout(dropout)

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
        offset = state["caches"][0][0].length
        x, _ = self.decoder(self._embed(tokens.unsqueeze(1), offset), state["memory"], None,
                            caches=state["caches"])  # (batch, 1, d_model)
        log_probs = torch.log_softmax((x.squeeze(1) @ self.embedding.weight.t()).float(), -1)
        return never_special(log_probs), state  # (batch, vocab)


ShowAttendTell.config_class, TransformerCaptioner.config_class = ShowAttendTellConfig, TransformerCaptionerConfig
ARCHS = {"show_attend_tell": ShowAttendTell, "transformer": TransformerCaptioner}  # model.arch= -> model class
