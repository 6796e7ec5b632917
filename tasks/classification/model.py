"""Text classifiers with attention: a BiLSTM with attention pooling or flattened self-attention, and
a small Transformer encoder. Each returns ``(logits, token_weights)``: ``logits (batch, outputs)``
(one logit for two classes, as Keras' ``Dense(1, sigmoid)``; else one per class) and
``token_weights (batch, len)``, how much attention each token got (for explanations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnapps.export.ops import searchsorted
from attnapps.attention import build_attention, lengths_to_mask, record
from attnapps.config import AttentionVariant, PROBABILITY_OR_AUTO, at_least, between, choice, opt
from attnapps.data.batching import pad_batch
from attnapps.layers import Dropout, SinusoidalPositions, TransformerEncoder, rnn_states, run_rnn


Pooling = choice("Pooling", ["attention", "flatten", "mean", "cls"])
# The help texts and defaults every architecture shares (0 / negative = chosen from the data, auto.py).
ATTENTION = opt("additive", "core variant of the attention pooling (dot + pooling=flatten = the Keras example)")
EMBED = opt(0, "embedding size; 0 = the architecture's (ngram 64, han 100, bilstm 256)", check=at_least(0))
HIDDEN = opt(0, "hidden size; 0 = the architecture's (han 50, bilstm 128 per direction, transformer d_model 128)",
             check=at_least(0))
HEADS = opt(4, "attention heads (transformer; attention=multihead)", check=at_least(1))
HOPS = opt(0, "learned queries of the attention pooling; 0 = the architecture's", check=at_least(0))
DROPOUT = opt(-1.0, "dropout; < 0 = from the data size (auto.py)", check=PROBABILITY_OR_AUTO)
ENSEMBLE = opt(0, "independently initialised models trained side by side, logits averaged; 0 = the architecture's",
               check=at_least(0))
POOLING = opt("attention", "bilstm_attention: attention | flatten; transformer: mean | cls (attention = mean)")
Companion = choice("Companion", ["auto", "on", "off"])
TFIDF = opt("auto", "vote with TF-IDF + logistic regression over the same tokens' n-grams (tfidf.py): auto = on "
            "(auto.py) | on | off")
TFIDF_SHARE = opt(-1.0, "the TF-IDF companion's share of the vote (probabilities mixed; 1 = it alone); < 0 = chosen on "
                  "valid at each evaluation from 0, 0.25, 0.5, 0.75, 1", check=lambda v: None if v < 0 or 0 <= v <= 1
                  else "must be in [0, 1] (or < 0: chosen on valid)")
TFIDF_C = opt(0.0, "the TF-IDF companion's inverse L2 strength; 0 = chosen on valid from 0.25, 1, 4, 16, 64 by accuracy",
              check=at_least(0))
SMOOTHING = opt(-1.0, "label smoothing of the cross-entropy; < 0 = from the data (auto.py): 0.1 with character "
                "tokens, else 0", check=PROBABILITY_OR_AUTO)


@dataclass
class NgramConfig:
    attention: AttentionVariant = ATTENTION
    embed_size: int = EMBED
    heads: int = HEADS
    hops: int = HOPS
    ngrams: int = opt(0, "n-gram orders 1..N (2..5 hashed); 0 = 2 for word tokens, 5 for characters",
                      check=between(0, 5))
    buckets: int = opt(0, "hash buckets per n-gram order (with model.min_count > 0: the most n-grams kept per order); "
                       "0 = 262144 for word tokens, 65536 for characters", check=at_least(0))
    min_count: int = opt(-1, "> 0: an n-gram vocabulary -- n-grams in at least this many training texts get a row "
                         "each (the most frequent model.buckets per order), rarer ones add nothing; 0 = hash every "
                         "n-gram into model.buckets rows; < 0 = from the tokens: 2 for characters, 0 for words",
                         check=at_least(-1))
    sparse: bool = opt(True, "sparse gradients for the lookup tables: each update touches only the rows the batch "
                             "reads (AdamW row by row, attnapps/training/optim.py); false = dense AdamW over every row")
    dropout: float = DROPOUT
    ensemble: int = ENSEMBLE
    label_smoothing: float = SMOOTHING
    tfidf: Companion = TFIDF
    tfidf_share: float = TFIDF_SHARE
    tfidf_c: float = TFIDF_C


@dataclass
class HANConfig:
    attention: AttentionVariant = ATTENTION
    embed_size: int = EMBED
    hidden_size: int = HIDDEN
    heads: int = HEADS
    dropout: float = DROPOUT
    ensemble: int = ENSEMBLE
    label_smoothing: float = SMOOTHING
    tfidf: Companion = TFIDF
    tfidf_share: float = TFIDF_SHARE
    tfidf_c: float = TFIDF_C


@dataclass
class BiLSTMConfig:
    attention: AttentionVariant = ATTENTION
    pooling: Pooling = POOLING
    embed_size: int = EMBED
    hidden_size: int = HIDDEN
    heads: int = HEADS
    hops: int = HOPS
    dropout: float = DROPOUT
    ensemble: int = ENSEMBLE
    label_smoothing: float = SMOOTHING
    tfidf: Companion = TFIDF
    tfidf_share: float = TFIDF_SHARE
    tfidf_c: float = TFIDF_C


@dataclass
class TransformerConfig:
    pooling: Pooling = POOLING
    hidden_size: int = HIDDEN
    heads: int = HEADS
    layers: int = opt(2, "Transformer layers", check=at_least(1))
    ff_size: int = opt(256, "feed-forward size of each Transformer layer", check=at_least(1))
    dropout: float = DROPOUT
    ensemble: int = ENSEMBLE
    label_smoothing: float = SMOOTHING
    tfidf: Companion = TFIDF
    tfidf_share: float = TFIDF_SHARE
    tfidf_c: float = TFIDF_C


class BiLSTMAttention(nn.Module):
    """``BiLSTMAttention(BiLSTMConfig, vocab_size, outputs, max_len)``. Embedding -> BiLSTM -> attention -> classifier.

    * ``pooling="attention"`` (default): ``hops`` learned queries attend over the BiLSTM states with any
      core variant (``additive`` default) -> their contexts, concatenated -> dropout -> linear. (Several
      rows of attention, as in Lin et al. 2017's structured self-attention, but not their formulation --
      queries enter the core variant's score, rows do not share one tanh layer -- and without their
      ``||AA^T - I||^2`` penalty.)
    * ``pooling="flatten"``: self-attention over the states (``attention="dot"`` is Keras'
      ``Attention()([h, h])``), flattened over a fixed ``max_len`` into a dense layer. With
      embed 128, hidden 64 per direction this is the Keras IMDB example's layout.
    """

    config_class = BiLSTMConfig

    # what model.*=0 / data.max_len=0 / trainer.lr=0 / trainer.batch_size=0 become (auto.py), chosen on the
    # valid splits of the development corpora (README)
    defaults = {"max_len": 256, "embed_size": 256, "hidden_size": 128, "hops": 4, "lr": 2e-3, "ensemble": 3,
                "batch_size": 32}
    reads_sentences, ngram_vocabulary = False, False  # documents as sentences; an n-gram vocabulary (model.min_count)

    def explained_attention(self) -> list:
        """The attention whose weights over the tokens explain the decision (what the diagnostics perturb)."""
        return [self.attention]

    def __init__(self, cfg: BiLSTMConfig, vocab_size: int, outputs: int, max_len: int = 200, pad_id: int = 0):
        super().__init__()
        embed_size, hidden_size, attention, pooling = cfg.embed_size, cfg.hidden_size, cfg.attention, cfg.pooling
        dropout, heads, hops = cfg.dropout, cfg.heads, cfg.hops
        if pooling not in ("attention", "flatten"):
            raise ValueError(f"model.pooling={pooling!r}: choose attention or flatten for bilstm_attention")
        self.pooling, self.max_len = pooling, max_len
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_size, hidden_size, batch_first=True, bidirectional=True)
        d = 2 * hidden_size
        self.attention = build_attention(attention, d, d, heads=heads)
        self.dropout = Dropout(dropout)
        if pooling == "attention":
            self.query = nn.Parameter(torch.randn(1, hops, d) * d ** -0.5)  # (1, hops, 2*hidden)
            self.head = nn.Linear(hops * self.attention.output_size, outputs)
        else:
            self.head = nn.Linear(max_len * self.attention.output_size, outputs)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, n = ids.shape
        mask = lengths_to_mask(lengths, n)  # (batch, len)
        x = self.dropout(self.embedding(ids))  # (batch, len, embed)
        h = rnn_states(self.lstm, x, lengths)  # (batch, len, 2*hidden)
        if self.pooling == "attention":
            query = self.query.expand(b, -1, -1)  # (batch, hops, 2*hidden)
            context, w = self.attention(query, h, mask=mask, need_weights=True)  # (batch, hops, d), weights
            w = self.attention.average_heads(w)  # (batch, hops, len)
            return self.head(self.dropout(context.flatten(1))), w.mean(1)  # token weights: mean over hops
        context, w = self.attention(h, h, mask=mask, need_weights=True)  # (batch, len, d), weights
        w = self.attention.average_heads(w)  # (batch, len, len)
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

    def explained_attention(self) -> list:
        """Every member's."""
        return [a for m in self.members for a in m.explained_attention()]

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        outs = [m(ids, lengths) for m in self.members]
        logits = torch.stack([o[0] for o in outs])  # (members, batch, outputs)
        weights = torch.stack([o[1] for o in outs]).mean(0)  # (batch, len)
        return (logits if self.training else logits.mean(0)), weights


class TransformerClassifier(nn.Module):
    """``TransformerClassifier(TransformerConfig, vocab_size, outputs)``: a small pre-LN Transformer
    encoder on the core's ``multihead``, mean or [CLS] pooling (``pooling=attention`` means mean)."""

    config_class = TransformerConfig

    # what model.*=0 / data.max_len=0 / trainer.lr=0 / trainer.batch_size=0 become (auto.py), chosen on the
    # valid splits of the development corpora (README)
    defaults = {"max_len": 512, "embed_size": 0, "hidden_size": 128, "hops": 1, "lr": 1e-3, "ensemble": 1,
                "batch_size": 32}
    reads_sentences, ngram_vocabulary = False, False  # documents as sentences; an n-gram vocabulary (model.min_count)

    def explained_attention(self) -> list:
        """The attention whose weights over the tokens explain the decision (what the diagnostics perturb)."""
        return [self.encoder.layers[-1].attn]

    def __init__(self, cfg: TransformerConfig, vocab_size: int, outputs: int, pad_id: int = 0):
        super().__init__()
        d_model, heads, layers, ff_size, dropout = cfg.hidden_size, cfg.heads, cfg.layers, cfg.ff_size, cfg.dropout
        pooling = "mean" if cfg.pooling == "attention" else cfg.pooling
        if pooling not in ("mean", "cls"):
            raise ValueError(f"model.pooling={pooling!r}: choose mean or cls for transformer")
        self.pooling, self.d_model = pooling, d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = SinusoidalPositions(d_model)
        self.encoder = TransformerEncoder(layers, d_model, heads, ff_size, dropout)
        self.dropout = Dropout(dropout)
        self.head = nn.Linear(d_model, outputs)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, n = ids.shape
        x = self.embedding(ids) * self.d_model ** 0.5  # (batch, len, d_model)
        mask = lengths_to_mask(lengths, n)  # (batch, len)
        if self.pooling == "cls":
            x = torch.cat([self.cls.expand(b, 1, -1), x], 1)  # (batch, 1 + len, d_model)
            mask = torch.cat([mask.new_ones(b, 1), mask], 1)
        x = self.dropout(x + self.positions(x.size(1)))
        need = not self.training  # the loss needs no weights: in training every layer keeps the fused kernel
        for layer in self.encoder.layers[:-1]:
            x = layer(x, mask=mask)
        out = self.encoder.layers[-1](x, mask=mask, need_weights=need)
        x, w = out if need else (out, None)  # w: (batch, heads, len, len)
        x = self.encoder.norm(x)
        m = mask.unsqueeze(-1).float()  # (batch, len, 1)
        if self.pooling == "cls":
            pooled = x[:, 0]  # (batch, d_model)
            token_w = w.mean(1)[:, 0, 1:] if need else m[:, 1:, 0] / m[:, 1:, 0].sum(1, keepdim=True).clamp(min=1)
        else:
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1)  # (batch, d_model)
            # attention each token received (uniform placeholder in training, where nothing reads it)
            token_w = (w.mean(1) * m).sum(1) / m.sum(1).clamp(min=1) if need else m[..., 0] / m.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled)), token_w


HASH_FOLD = 2**40 - 87  # a prime; (2**40) * 1_000_003 + 10**6 < 2**63


def hashed_ngrams(ids: Tensor, n: int, buckets: int) -> Tensor:
    """Ids of the ``n``-grams starting at each position, hashed into ``buckets``: ``(batch, len - n + 1)``."""
    h = ids[:, : ids.size(1) - n + 1]
    for k in range(1, n):
        if k >= 3:  # 4- and 5-grams: fold first, so that h * 1_000_003 stays below 2**63
            h = h % HASH_FOLD
        h = h * 1_000_003 + ids[:, k: ids.size(1) - n + 1 + k]  # < 2**63 for vocabularies below 10**6 and n <= 3
    return h % buckets


KEY_SPAN = HASH_FOLD  # n-gram keys: hash of the k-gram (< HASH_FOLD) + (k - 2) * HASH_FOLD, distinct per order


def ngram_key(ids: Tensor, n: int) -> Tensor:
    """Keys of the ``n``-grams starting at each position ``(batch, len - n + 1)``: practically one per
    distinct n-gram (hashed modulo a prime near 2**40), orders apart."""
    return hashed_ngrams(ids, n, HASH_FOLD) + (n - 2) * KEY_SPAN


NONE = -2**62  # the key of a position where no n-gram starts (it would run into padding)


def ngram_keys(ids: Tensor, lengths: Tensor, orders: int, lowest: int = 2) -> Tensor:
    """``(batch, positions)`` keys of every ``lowest``..``orders``-gram of each padded row ``ids (batch, len)``
    (:data:`NONE` where the n-gram runs into padding): a key per distinct n-gram, orders apart -- unigrams
    (``lowest=1``) as ``-(id + 1)``, longer ones as :func:`ngram_key`."""
    n = ids.size(1)
    pos = torch.arange(n, device=ids.device)
    out = [torch.where(pos < lengths.unsqueeze(1), -1 - ids, NONE)] if lowest <= 1 else []  # (batch, len)
    for k in range(max(2, lowest), min(orders, n) + 1):
        whole = pos[: n - k + 1] + k <= lengths.unsqueeze(1)  # (batch, len - k + 1): the n-gram is all text
        out.append(torch.where(whole, ngram_key(ids, k), NONE))
    return torch.cat(out, 1) if out else ids.new_zeros(ids.size(0), 0)


def document_frequencies(docs: list[list[int]], orders: int, lowest: int = 2, batch: int = 512
                         ) -> tuple[Tensor, Tensor]:
    """``(keys, df)``: the sorted keys (:func:`ngram_keys`) of the n-grams found in ``docs`` (token-id
    lists) and in how many of the docs each is (scikit-learn's document frequency)."""
    keys, counts, pending = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), []

    def merge(keys, counts, pending):
        k = torch.cat([keys, *pending])
        c = torch.cat([counts, *[torch.ones_like(p) for p in pending]])
        keys, inverse = torch.unique(k, return_inverse=True)  # sorted
        return keys, torch.zeros_like(keys).scatter_add_(0, inverse, c)

    for start in range(0, len(docs), batch):
        ids, lengths = pad_batch(docs[start:start + batch])  # (batch, len)
        k = ngram_keys(ids, lengths, orders, lowest)  # (batch, positions)
        rows = torch.arange(ids.size(0)).unsqueeze(1).expand_as(k)
        found = k > NONE
        pending.append(torch.unique(torch.stack([rows[found], k[found]]), dim=1)[1])  # each n-gram once per text
        if len(pending) >= 64:  # bound the memory of long corpora
            keys, counts = merge(keys, counts, pending)
            pending = []
    return merge(keys, counts, pending)


def ngram_vocabulary(docs: list[list[int]], ngrams: int, min_count: int, max_per_order: int,
                     batch: int = 512) -> Tensor:
    """The sorted keys (:func:`ngram_key`) of the 2..``ngrams``-grams found in at least ``min_count`` of
    ``docs`` (token-id lists), at most ``max_per_order`` of each order (the most frequent; ties by key).

    Document frequencies as scikit-learn's ``min_df``: a rare n-gram is seen by one training text
    only, so its row would just memorise that text -- and at test time it would stand for noise.
    """
    keys, counts = document_frequencies(docs, ngrams, 2, batch)
    keep = counts >= min_count
    keys, counts = keys[keep], counts[keep]
    kept = []
    for k in range(ngrams - 1):  # the most frequent max_per_order of each order
        in_order = (keys // KEY_SPAN) == k
        order_keys, order_counts = keys[in_order], counts[in_order]
        if len(order_keys) > max_per_order:
            order_keys = order_keys[torch.argsort(-order_counts, stable=True)[:max_per_order]]
        kept.append(order_keys)
    return torch.sort(torch.cat(kept)).values


class NgramAttention(nn.Module):
    """``NgramAttention(NgramConfig, vocab_size, outputs, keys=)``: a fastText-style classifier (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification")
    whose mean over n-gram embeddings is replaced by attention pooling.

    Each position ``i`` gets ``e_i = E[w_i] + sum_{k=2..ngrams} H_k[hash(w_i .. w_{i+k-1})]`` (unigram
    embedding plus hashed n-gram embeddings) ``(batch, len, embed)`` -- or, given ``keys`` (an n-gram
    vocabulary, :func:`ngram_vocabulary`), ``G[row of the n-gram]`` from one table with a row per known
    n-gram and a zero row for all others; ``hops`` learned queries attend
    over the ``e_i`` with any core variant; their contexts (and, with ``mean=True``, the plain fastText
    mean) go to a linear layer. No recurrence, no convolution: thousands of documents per second on a CPU.
    """

    config_class = NgramConfig

    # what model.*=0 / data.max_len=0 / trainer.lr=0 / trainer.batch_size=0 become (auto.py), chosen on the
    # valid splits of the development corpora (README)
    defaults = {"max_len": 1000, "embed_size": 64, "hidden_size": 0, "hops": 2, "lr": 5e-3, "ensemble": 1,
                "batch_size": 64, "ngrams": 2, "buckets": 262144}
    reads_sentences, ngram_vocabulary = False, True  # documents as sentences; an n-gram vocabulary (model.min_count)

    def explained_attention(self) -> list:
        """The attention whose weights over the tokens explain the decision (what the diagnostics perturb)."""
        return [self.attention]

    def __init__(self, cfg: NgramConfig, vocab_size: int, outputs: int, pad_id: int = 0, mean: bool = True,
                 keys: Tensor | None = None):
        super().__init__()
        embed_size, ngrams, buckets, attention = cfg.embed_size, cfg.ngrams, cfg.buckets, cfg.attention
        hops, dropout, heads = cfg.hops, cfg.dropout, cfg.heads
        self.ngrams, self.buckets, self.use_mean = ngrams, buckets, mean
        sparse = getattr(cfg, "sparse", False)  # (row-wise updates: only the rows a batch reads change)
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id, sparse=sparse)
        if keys is None:  # hashing: one table of model.buckets rows per order
            self.hashed = nn.ModuleList(nn.Embedding(buckets, embed_size, sparse=sparse) for _ in range(ngrams - 1))
            self.keys, tables = None, [self.embedding, *self.hashed]
        else:  # a vocabulary: row 0 (zeros) for every n-gram it lacks
            self.register_buffer("keys", keys, persistent=False)  # sorted; the task's state keeps them
            self.grams = nn.Embedding(len(keys) + 1, embed_size, padding_idx=0, sparse=sparse)
            tables = [self.embedding, self.grams]
        for table in tables:
            nn.init.normal_(table.weight, std=embed_size ** -0.5)
        if keys is not None:
            with torch.no_grad():
                self.grams.weight[0].zero_()  # unknown n-grams add nothing
        self.attention = build_attention(attention, embed_size, embed_size, heads=heads)
        self.query = nn.Parameter(torch.randn(1, hops, embed_size) * embed_size ** -0.5)  # (1, hops, embed)
        self.dropout = Dropout(dropout)
        width = hops * self.attention.output_size + (embed_size if mean else 0)
        self.head = nn.Linear(width, outputs)

    def embed(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(e (batch, len, embed), mask (batch, len))``."""
        n = ids.size(1)
        mask = lengths_to_mask(lengths, n)  # (batch, len)
        e = self.embedding(ids)  # (batch, len, embed)
        for k in range(2, min(self.ngrams, n) + 1):
            valid = mask[:, k - 1:].unsqueeze(-1)  # (batch, len - k + 1, 1): the whole n-gram is text
            if self.keys is None:
                rows = self.hashed[k - 2](hashed_ngrams(ids, k, self.buckets))  # (batch, len - k + 1, embed)
            else:
                rows = self.grams(self.vocabulary_rows(ids, k))
            e = e + nn.functional.pad(rows * valid, (0, 0, 0, k - 1))
        return e, mask

    def vocabulary_rows(self, ids: Tensor, k: int) -> Tensor:
        """Rows of ``self.grams`` for the ``k``-grams at each position ``(batch, len - k + 1)``; 0 = unknown."""
        key = ngram_key(ids, k)
        i = searchsorted(self.keys, key).clamp(max=max(len(self.keys) - 1, 0))  # traceable while exporting
        found = self.keys[i] == key if len(self.keys) else torch.zeros_like(key, dtype=torch.bool)
        return (i + 1) * found

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        e, mask = self.embed(ids, lengths)
        e = self.dropout(e)
        context, w = self.attention(self.query.expand(ids.size(0), -1, -1), e, mask=mask, need_weights=True)
        w = self.attention.average_heads(w)  # (batch, hops, len)
        features = [context.flatten(1)]  # (batch, hops * embed)
        if self.use_mean:
            m = mask.unsqueeze(-1).to(e.dtype)
            features.append((e * m).sum(1) / m.sum(1).clamp(min=1))  # (batch, embed)
        return self.head(self.dropout(torch.cat(features, -1))), w.mean(1)


def _cells(raw_sid: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per token: compacted sentence index and position in it; per raw sentence: word count, non-empty."""
    b, n = keep.shape
    counts = torch.zeros(b, n + 1, dtype=torch.long, device=keep.device)
    counts.scatter_add_(1, raw_sid, keep.long())  # words per raw sentence (batch, len + 1)
    nonempty = counts > 0
    sid = (torch.cumsum(nonempty.long(), 1) - 1).gather(1, raw_sid)  # compacted sentence index (batch, len)
    before = (torch.cumsum(counts, 1) - counts).gather(1, raw_sid)  # words of earlier sentences
    pos = torch.cumsum(keep.long(), 1) - 1 - before  # position inside the sentence (batch, len)
    return sid, pos, counts, nonempty


def split_sentences(ids: Tensor, lengths: Tensor, sep_id: int, max_words: int = 50
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cut flat documents at ``sep_id`` tokens (and every ``max_words`` words) into a sentence grid, vectorised.

    ``ids (batch, len)`` -> ``words (batch, sents, words)`` (separators dropped, empty sentences
    skipped), ``word_lengths (batch, sents)``, ``sent_counts (batch,)``, and ``where (batch, len, 2)``:
    each flat token's (sentence, word) cell, ``-1`` for separators and padding.
    """
    b, n = ids.shape
    valid = lengths_to_mask(lengths, n)  # (batch, len)
    sep = (ids == sep_id) & valid
    keep = valid & ~sep  # (batch, len)
    raw_sid = torch.cumsum(sep.long(), 1) - sep.long()  # sentence number before compaction (batch, len)
    _, pos, _, _ = _cells(raw_sid, keep)
    overflow = keep & (pos > 0) & (pos % max_words == 0)  # a long sentence continues as a new one
    raw_sid = raw_sid + torch.cumsum(overflow.long(), 1)
    sid, pos, counts, nonempty = _cells(raw_sid, keep)
    sent_counts = nonempty.sum(1)  # (batch,)
    sents, width = max(1, int(sent_counts.max())), max(1, int(counts.max()))
    words = ids.new_zeros(b, sents, width)  # (batch, sents, words); 0 = pad
    rows = torch.arange(b, device=ids.device).unsqueeze(1).expand(b, n)
    words[rows[keep], sid[keep], pos[keep]] = ids[keep]
    word_lengths = counts.new_zeros(b, sents).scatter_reduce(  # (batch, sents): the largest position + 1
        1, sid.masked_fill(~keep, 0), (pos + 1) * keep, "amax")
    where = torch.stack([sid.masked_fill(~keep, -1), pos.masked_fill(~keep, -1)], -1)  # (batch, len, 2)
    return words, word_lengths, sent_counts, where


class HierarchicalAttention(nn.Module):
    """``HierarchicalAttention(HANConfig, vocab_size, outputs, sep_id=)``: the Hierarchical Attention Network (Yang et al. 2016, "Hierarchical Attention Networks for Document
    Classification"): a BiGRU over the words of each sentence with attention pooling (a learned word
    context vector) gives sentence vectors; a BiGRU over the sentences with attention pooling gives the
    document vector -> dropout -> linear. Both attentions use any core variant.

    Input is the flat document with ``sep_id`` between sentences. Returns ``(logits, token_weights)`` with
    ``token_weights = word weight x weight of its sentence`` per flat token; :meth:`explain` also gives
    the two levels apart.
    """

    config_class = HANConfig

    # what model.*=0 / data.max_len=0 / trainer.lr=0 / trainer.batch_size=0 become (auto.py), chosen on the
    # valid splits of the development corpora (README)
    defaults = {"max_len": 1000, "embed_size": 100, "hidden_size": 50, "hops": 1, "lr": 2e-3, "ensemble": 1,
                "batch_size": 32}
    reads_sentences, ngram_vocabulary = True, False  # documents as sentences; an n-gram vocabulary (model.min_count)

    def explained_attention(self) -> list:
        """No one module: its token weights are the product of two levels, whose keys are not the tokens
        (no permutation test)."""
        return []

    def __init__(self, cfg: HANConfig, vocab_size: int, outputs: int, pad_id: int = 0, sep_id: int = 3):
        super().__init__()
        embed_size, hidden_size, attention, dropout, heads = (cfg.embed_size, cfg.hidden_size, cfg.attention,
                                                              cfg.dropout, cfg.heads)
        self.sep_id = sep_id
        d = 2 * hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.word_rnn = nn.GRU(embed_size, hidden_size, batch_first=True, bidirectional=True)
        self.word_attention = build_attention(attention, d, d, heads=heads)
        self.word_query = nn.Parameter(torch.randn(1, 1, d) * d ** -0.5)  # u_w
        self.sent_rnn = nn.GRU(self.word_attention.output_size, hidden_size, batch_first=True, bidirectional=True)
        self.sent_attention = build_attention(attention, d, d, heads=heads)
        self.sent_query = nn.Parameter(torch.randn(1, 1, d) * d ** -0.5)  # u_s
        self.dropout = Dropout(dropout)
        self.head = nn.Linear(self.sent_attention.output_size, outputs)

    @staticmethod
    def _pool(attention, query: Tensor, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        context, w = attention(query.expand(h.size(0), -1, -1), h, mask=mask, need_weights=True)
        w = attention.average_heads(w)  # (rows, 1, len)
        return context[:, 0], w[:, 0]

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        words, word_lengths, sent_counts, where = split_sentences(ids, lengths, self.sep_id)
        b, s, n = words.shape
        real = word_lengths.flatten() > 0  # (batch * sents,) sentences that exist
        x = self.dropout(self.embedding(words.flatten(0, 1)[real]))  # (real, words, embed)
        h, _ = run_rnn(self.word_rnn, x, word_lengths.flatten()[real])  # (real, words, 2*hidden)
        word_mask = lengths_to_mask(word_lengths.flatten()[real], n)
        sent_vec, word_w = self._pool(self.word_attention, self.word_query, h, word_mask)  # (real, d), (real, words)
        sents = sent_vec.new_zeros(b * s, sent_vec.size(-1))
        sents[real] = sent_vec
        sents = sents.view(b, s, -1)  # (batch, sents, d)
        counts = sent_counts.clamp(min=1)
        hs, _ = run_rnn(self.sent_rnn, self.dropout(sents), counts)  # (batch, sents, 2*hidden)
        doc, sent_w = self._pool(self.sent_attention, self.sent_query, hs, lengths_to_mask(counts, s))  # (batch, d)
        token_w = self.token_weights(where, self.cells(word_w, real, b, s, n), sent_w)  # (batch, len)
        return self.head(self.dropout(doc)), token_w

    @staticmethod
    def cells(word_w: Tensor, real: Tensor, b: int, s: int, n: int) -> Tensor:
        """``(real, words)`` word weights of the sentences that exist -> ``(batch, sents, words)``."""
        out = word_w.new_zeros(b * s, n)
        out[real] = word_w[:, :n]
        return out.view(b, s, n)

    @staticmethod
    def token_weights(where: Tensor, word_w: Tensor, sent_w: Tensor) -> Tensor:
        """Each flat token's weight: its word weight times its sentence's (``where``: its cell, -1 = none)."""
        ok = where[..., 0] >= 0
        rows = torch.arange(where.size(0), device=where.device).unsqueeze(1).expand_as(ok)
        token_w = sent_w.new_zeros(ok.shape)  # (batch, len)
        si, wi = where[..., 0][ok], where[..., 1][ok]
        token_w[ok] = word_w[rows[ok], si, wi] * sent_w[rows[ok], si]
        return token_w

    def explain(self, ids: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """The two levels apart, read from one forward pass by :func:`attnapps.attention.record` (the word
        attention over each sentence, the sentence attention over the document, heads averaged):
        ``logits``, ``token_weights`` (as :meth:`forward` returns), ``sentence_weights (batch, sents)``,
        ``word_weights (batch, sents, words)``, ``where (batch, len, 2)`` (each token's cell, -1 = a
        separator) and ``sentences (batch,)``."""
        with record(self) as maps:
            logits, token_w = self(ids, lengths)
        words, word_lengths, sent_counts, where = split_sentences(ids, lengths, self.sep_id)
        b, s, n = words.shape
        word_w = maps["word_attention"].mean(1)[:, 0]  # (real sentences, words)
        sent_w = maps["sent_attention"].mean(1)[:, 0]  # (batch, sents)
        return {"logits": logits, "token_weights": token_w, "sentence_weights": sent_w,
                "word_weights": self.cells(word_w, word_lengths.flatten() > 0, b, s, n), "where": where,
                "sentences": sent_counts}


# model.arch= -> model class (each with its config_class); the order is auto.py's
ARCHS = {"ngram_attention": NgramAttention, "han": HierarchicalAttention, "bilstm_attention": BiLSTMAttention,
         "transformer": TransformerClassifier}
