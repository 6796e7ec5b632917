"""A translation lexicon for the decoder: IBM Model 1 (Brown et al. 1993) fitted on the training pairs'
subword pieces, and the attention-weighted lexical bias of Arthur et al. (2016), "Incorporating
Discrete Translation Lexicons into Neural Machine Translation".

IBM Model 1 gives ``t(f | e)``, the probability that source piece ``e`` (or NULL) translates as
target piece ``f``, by expectation-maximisation over the co-occurrences of each training pair. The
decoder's attention ``a_t`` over the source turns it into a distribution for target step ``t``:

    p_lex(y) = sum_j a_tj t(y | x_j)

added to the output logits as ``log(p_lex(y) + eps)`` (their "bias" method): what the word-by-word
baseline knows about which words translate which, where the attention looks. Kept sparse: the
``top`` most probable targets of each source piece (``ids``, ``probs`` ``(src_vocab, top)``). Fitted
with tensors (every co-occurrence at once, ``scatter_add``): about a second for ~15k pairs.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch
from torch import Tensor, nn


# IBM Model 1 holds every (source, target) co-occurrence of its pairs at once: about 60 bytes each. A corpus
# with more than this many is fitted on a fixed random sample of its pairs that has no more (~1.2 GB): a
# lexicon's most probable entries are known long before millions of pairs
MAX_COOCCURRENCES = 20_000_000


def sample_pairs(pairs, budget: int = 0) -> list:
    """``pairs`` (source, target) as a list, or, when their co-occurrences ``(1 + S) * T`` exceed ``budget``
    (default :data:`MAX_COOCCURRENCES`), the longest prefix of a fixed shuffle of them within it."""
    budget = budget or MAX_COOCCURRENCES
    sizes = [(len(s) + 1) * len(t) for s, t in pairs]
    if sum(sizes) <= budget:
        return list(pairs)
    order = list(range(len(sizes)))
    random.Random(0).shuffle(order)
    chosen, used = [], 0
    for i in order:
        if used + sizes[i] > budget:
            break
        chosen.append(i)
        used += sizes[i]
    return [pairs[i] for i in sorted(chosen)]


def ibm1_tables(pairs: list[tuple[list[int], list[int]]], src_vocab: int, tgt_vocab: int, iterations: int = 5,
                null_id: int = 0):
    """IBM Model 1 by EM from uniform, every co-occurrence of the training ``pairs`` (source ids, target
    ids) at once -- of a sample of them above :data:`MAX_COOCCURRENCES` (:func:`sample_pairs`). Yields,
    after each iteration, ``(keys, t)``: the distinct co-occurring ``e * tgt_vocab + f`` ``(M,)`` and
    ``t(f | e)`` ``(M,)`` (float64). ``null_id`` stands for the NULL source word."""
    e_parts, f_parts, blocks = [], [], []
    for src, tgt in sample_pairs(pairs):
        if not tgt:
            continue
        e = torch.tensor([null_id] + list(src), dtype=torch.long)  # (1 + S,)
        f = torch.tensor(tgt, dtype=torch.long)  # (T,)
        e_parts.append(e.repeat(len(f)))  # every (e, f) co-occurrence: blocks of 1 + S per target token
        f_parts.append(f.repeat_interleave(len(e)))
        blocks.append(torch.full((len(f),), len(e), dtype=torch.long))
    e, f, blocks = torch.cat(e_parts), torch.cat(f_parts), torch.cat(blocks)  # (N,), (N,), (targets,)
    target_of = torch.repeat_interleave(torch.arange(len(blocks)), blocks)  # (N,): its target token
    keys, inverse = torch.unique(e * tgt_vocab + f, return_inverse=True)  # (M,) distinct (e, f), (N,)
    source_of = keys // tgt_vocab  # (M,)
    t = torch.full((len(keys),), 1.0 / tgt_vocab, dtype=torch.float64)  # t(f | e), uniform start
    for _ in range(iterations):
        vals = t[inverse]  # (N,)
        z = torch.zeros(len(blocks), dtype=torch.float64).scatter_add_(0, target_of, vals)  # (targets,)
        counts = torch.zeros(len(keys), dtype=torch.float64).scatter_add_(0, inverse, vals / z[target_of])
        totals = torch.zeros(src_vocab, dtype=torch.float64).scatter_add_(0, source_of, counts)  # (src_vocab,)
        t = counts / totals[source_of]
        yield keys, t


def fit_ibm1(pairs: list[tuple[list[int], list[int]]], src_vocab: int, tgt_vocab: int, iterations: int = 5,
             top: int = 32, null_id: int = 0) -> dict[str, Tensor]:
    """``{"ids", "probs"}`` ``(src_vocab, top)``: each source piece's ``top`` most probable target pieces
    under IBM Model 1 (:func:`ibm1_tables`, ``iterations``), renormalised to sum to 1; all zero for a
    piece never seen in training (its bias is then the same for every target: no effect). ``null_id``
    (the padding id, never a real source token) stands for the NULL word."""
    for keys, t in ibm1_tables(pairs, src_vocab, tgt_vocab, iterations, null_id):
        pass
    ids, probs = top_entries(keys, t, src_vocab, tgt_vocab, top)
    probs = probs / probs.sum(1, keepdim=True).clamp_min(1e-30)
    return {"ids": ids, "probs": probs.float()}


def top_entries(keys: Tensor, t: Tensor, src_vocab: int, tgt_vocab: int, top: int) -> tuple[Tensor, Tensor]:
    """The ``top`` most probable targets of each source of an IBM Model 1 table: ``ids``, ``t``
    ``(src_vocab, top)``, zero where a source has fewer."""
    source_of = keys // tgt_vocab
    order = torch.argsort(t, descending=True, stable=True)
    order = order[torch.argsort(source_of[order], stable=True)]  # grouped by source, most probable first
    src_sorted = source_of[order]
    rank = torch.arange(len(order)) - torch.searchsorted(src_sorted, src_sorted)  # rank within its source
    keep = rank < top
    rows, cols, entries = src_sorted[keep], rank[keep], order[keep]
    ids = torch.zeros(src_vocab, top, dtype=torch.long)
    probs = torch.zeros(src_vocab, top, dtype=torch.float64)
    ids[rows, cols] = keys[entries] % tgt_vocab
    probs[rows, cols] = t[entries]
    return ids, probs


class LexicalBias(nn.Module):
    """``log(p_lex + eps)`` (Arthur et al. 2016) from a sparse lexicon ``ids``, ``probs``
    ``(src_vocab, top)``. ``forward(weights (batch, src_len) or (batch, tgt_len, src_len), src (batch,
    src_len) source ids)`` -> bias ``(batch, [tgt_len,] tgt_vocab)`` to add to the logits."""

    def __init__(self, ids: Tensor, probs: Tensor, tgt_vocab: int, eps: float = 1e-3):
        super().__init__()
        self.tgt_vocab, self.eps = tgt_vocab, eps
        self.weight = 1.0  # the bias's weight: 1 in training; decoding may weigh it otherwise (decode.lexicon_weight)
        self.register_buffer("ids", ids.long(), persistent=False)  # from the task state, like the tokenizer
        self.register_buffer("probs", probs.float(), persistent=False)

    def forward(self, weights: Tensor, src: Tensor) -> Tensor:
        ids, probs = self.ids[src], self.probs[src]  # (batch, src_len, top) each
        if weights.dim() == 3:  # teacher forcing: one row per target position
            ids = ids.unsqueeze(1).expand(-1, weights.size(1), -1, -1)  # (batch, tgt_len, src_len, top)
            probs = probs.unsqueeze(1)
        vals = weights.float().unsqueeze(-1) * probs  # (.., src_len, top): a_j t(y | x_j)
        p = weights.new_zeros(*weights.shape[:-1], self.tgt_vocab, dtype=vals.dtype)  # fp32 (fp64 in an fp64 model)
        p = p.scatter_add(-1, ids.flatten(-2), vals.flatten(-2))  # (.., tgt_vocab)
        return torch.log(p + self.eps) * self.weight


@contextmanager
def lexicon_weight(model: nn.Module, weight: float):
    """Inside: the model's lexical bias (``model.lexicon``, if any) weighs ``weight``; as before after."""
    lexicon = getattr(model, "lexicon", None)
    if lexicon is None:
        yield
        return
    before, lexicon.weight = lexicon.weight, weight
    try:
        yield
    finally:
        lexicon.weight = before


def channel_log_probs(lexicon: dict[str, Tensor], source: list[int], candidates: list[list[int]], null_id: int = 0,
                      eps: float = 1e-4) -> Tensor:
    """``log P(source | candidate)`` under IBM Model 1 for each candidate translation of one source
    sentence -- the channel model of noisy-channel re-ranking (Brown et al. 1993; Yee et al. 2019) --
    from a sparse *reverse* lexicon (``ids``, ``probs`` ``(target ids, top)``: a target token -- word or
    piece -- to the source tokens it translates; ``null_id`` its NULL row):

        log P(x | y) = sum_j log( sum_{i in NULL, y_1..y_m} t(x_j | y_i) / (m + 1) + eps )

    ``(len(candidates),)``; ``eps`` stands in for the pairs outside the lexicon's ``top``."""
    longest = max(len(c) for c in candidates) + 1
    hyp = torch.full((len(candidates), longest), null_id, dtype=torch.long)  # (n, 1 + m): NULL first
    mask = torch.zeros(len(candidates), longest)
    for i, c in enumerate(candidates):
        hyp[i, 1:len(c) + 1] = torch.tensor(c, dtype=torch.long)
        mask[i, :len(c) + 1] = 1.0 / (len(c) + 1)
    src = torch.tensor(source, dtype=torch.long)  # (S,)
    ids, probs = lexicon["ids"][hyp], lexicon["probs"][hyp].float()  # (n, 1 + m, top)
    t = ((ids.unsqueeze(-1) == src).float() * probs.unsqueeze(-1)).sum(2)  # (n, 1 + m, S): t(x_j | y_i)
    return torch.log((t * mask.unsqueeze(-1)).sum(1) + eps).sum(-1)  # (n,)


WORD_PAIRS = 200_000  # training pairs whose words a word-level lexicon is fitted on, at most


def word_sample(train):
    """``train``, or a fixed random sample of :data:`WORD_PAIRS` of its pairs (in corpus order)."""
    if len(train) <= WORD_PAIRS:
        return train
    return [train[i] for i in sorted(random.Random(0).sample(range(len(train)), WORD_PAIRS))]


def fit_word_channel(train: list[tuple[str, str]], source_words, target_words, top: int = 32) -> dict:
    """The channel model of ``decode.channel``: IBM Model 1 fitted on the training pairs' *words* from the
    target side to the source side (5 EM iterations), each target word's ``top`` source words kept.
    ``{"source": source words (id = index + 1), "target": target words (id = index + 2; 0 = NULL, 1 = a
    word never seen), "ids", "probs" (target words + 2, top)}`` -- lists and tensors, as a checkpoint
    loads them with ``weights_only=True``. ``source_words``/``target_words``: text -> words."""
    pairs, src_ids, tgt_ids = index_words(train, source_words, target_words, first_target=2)
    lexicon = fit_ibm1([(f, e) for e, f in pairs], len(tgt_ids) + 2, len(src_ids) + 1, top=top, null_id=0)
    return {"source": list(src_ids), "target": list(tgt_ids), **lexicon}


def index_words(train: list[tuple[str, str]], source_words, target_words, first_target: int = 1):
    """The training pairs as word ids for a word-level IBM Model 1: ``(pairs [(source ids, target ids)],
    source word -> id from 1, target word -> id from first_target)``; id 0 is NULL on either side. Of a
    corpus of more than :data:`WORD_PAIRS` pairs, a fixed random sample of them (:func:`word_sample`)."""
    train = word_sample(train)
    src_ids: dict[str, int] = {}
    tgt_ids: dict[str, int] = {}
    pairs = [([src_ids.setdefault(w, len(src_ids) + 1) for w in source_words(s)],
              [tgt_ids.setdefault(w, len(tgt_ids) + first_target) for w in target_words(g)]) for s, g in train]
    return pairs, src_ids, tgt_ids


class WordChannel:
    """``log P(source words | candidate words)`` (:func:`channel_log_probs` at the word level) from
    :func:`fit_word_channel`'s state: a source word never seen in training has no mass (``eps``), a
    candidate word never seen translates nothing."""

    def __init__(self, state: dict):
        self.source = {w: i + 1 for i, w in enumerate(state["source"])}
        self.target = {w: i + 2 for i, w in enumerate(state["target"])}
        self.lexicon = {"ids": state["ids"], "probs": state["probs"]}

    def log_probs(self, source: list[str], candidates: list[list[str]]) -> Tensor:
        return channel_log_probs(self.lexicon, [self.source.get(w, -1) for w in source],
                                 [[self.target.get(w, 1) for w in c] for c in candidates], null_id=0)
