"""TF-IDF + logistic regression over the model's own tokens, fitted in PyTorch: the practitioner's
baseline as a companion the classifier can vote with (``model.tfidf``).

A linear model over character n-grams is hard to beat on short texts (README, "Your language"), and it
errs on other texts than the attention model does: mixing the two models' probabilities,
``p = share * p_tfidf + (1 - share) * p_model``, with the share chosen on the valid split, is ahead of
either alone on the development sets. The companion reads the token ids the model reads, so everything
that runs the model (predict, serve, the explorer) runs it too.

* :func:`vocabulary` -- the 1..``orders``-grams of the training texts found in at least ``min_df`` of
  them (scikit-learn's ``min_df``), as sorted keys, and their smoothed inverse document frequencies;
* :func:`features` -- texts as sparse TF-IDF rows: ``(1 + ln count) * idf``, each row scaled to unit
  length (``TfidfVectorizer(sublinear_tf=True)``'s weighting);
* :func:`fit` -- multinomial logistic regression with an L2 penalty, ``C * sum(cross-entropy) + |W|^2 / 2``
  (scikit-learn's ``LogisticRegression(C)``; the bias is not penalised), by full-batch L-BFGS; ``C`` chosen
  on valid from :data:`C_GRID` by accuracy, as the report's baseline chooses its own;
* :class:`TfidfCompanion` -- the fitted model as a module ``(ids, lengths) -> logits``;
* :class:`WithTfidf` -- a classifier and its companion voting together.
"""

from __future__ import annotations

import random
import warnings

import torch
from torch import Tensor, nn

from attnapps.data.batching import pad_batch
from attnapps.export.ops import searchsorted

from .model import document_frequencies, ngram_keys

C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)  # the inverse L2 strengths tried on valid (as baseline.py's)
# training documents the companion is fitted on: its fit grew 20x from 100k to 1M documents (README,
# Performance), while a linear model over n-grams gains little past a few hundred thousand
MAX_DOCS = 200_000
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the companion's shares of the vote tried on valid (1: the companion alone)


def counts(ids: Tensor, lengths: Tensor, orders: int, vocab: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The known n-grams of each row: ``(rows, columns, counts)``, one triple per (text, n-gram) pair;
    ``vocab``: sorted keys, a column each."""
    k = ngram_keys(ids, lengths, orders, lowest=1)  # (batch, positions)
    col = searchsorted(vocab, k).clamp(max=max(len(vocab) - 1, 0))  # (batch, positions)
    known = (vocab[col] == k) if len(vocab) else torch.zeros_like(k, dtype=torch.bool)
    rows = torch.arange(ids.size(0), device=ids.device).unsqueeze(1).expand_as(k)
    pair, count = torch.unique(rows[known] * max(len(vocab), 1) + col[known], return_counts=True)
    return pair // max(len(vocab), 1), pair % max(len(vocab), 1), count


def vocabulary(docs: list[list[int]], orders: int, min_df: int = 2) -> tuple[Tensor, Tensor]:
    """``(keys, idf)``: the sorted keys of the 1..``orders``-grams in at least ``min_df`` of ``docs``
    (token-id lists) and their ``ln((1 + n) / (1 + df)) + 1`` (scikit-learn's smoothed idf)."""
    found, df = document_frequencies(docs, orders, lowest=1)
    keep = df >= min_df
    return found[keep], torch.log((1 + len(docs)) / (1 + df[keep].double())).float() + 1


def features(ids: Tensor, lengths: Tensor, orders: int, vocab: Tensor, idf: Tensor) -> Tensor:
    """``(batch, len(vocab))`` sparse TF-IDF rows of the padded texts ``ids (batch, len)``."""
    rows, cols, count = counts(ids, lengths, orders, vocab)
    value = (1 + torch.log(count.float())) * idf[cols]  # sublinear tf times idf
    norm = torch.zeros(ids.size(0), device=ids.device).index_add_(0, rows, value * value).sqrt()
    value = value / norm[rows].clamp(min=1e-12)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), value, (ids.size(0), len(vocab)),
                                   check_invariants=False).coalesce()


def dense_features(ids: Tensor, lengths: Tensor, orders: int, vocab: Tensor, idf: Tensor) -> Tensor:
    """:func:`features` as a dense ``(batch, len(vocab))`` tensor, from scatters only (what exports to ONNX)."""
    k = ngram_keys(ids, lengths, orders, lowest=1)  # (batch, positions)
    col = searchsorted(vocab, k).clamp(max=max(len(vocab) - 1, 0))  # (batch, positions)
    known = (vocab[col] == k).float()
    count = torch.zeros(ids.size(0), len(vocab), device=ids.device).scatter_add(1, col, known)  # (batch, V)
    value = torch.where(count > 0, (1 + torch.log(count.clamp(min=1))) * idf, 0.0)
    return value / value.norm(dim=1, keepdim=True).clamp(min=1e-12)


def matrix(docs: list[list[int]], orders: int, vocab: Tensor, idf: Tensor, batch: int = 1024) -> Tensor:
    """All of ``docs`` as one sparse ``(len(docs), len(vocab))`` TF-IDF matrix (CSR)."""
    parts = []
    for start in range(0, len(docs), batch):
        ids, lengths = pad_batch(docs[start:start + batch])
        x = features(ids, lengths, orders, vocab, idf)
        i = x.indices()
        parts.append((i[0] + start, i[1], x.values()))
    rows, cols, values = (torch.cat(p) for p in zip(*parts))
    x = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (len(docs), len(vocab)), check_invariants=False)
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta": the product is all we use
        warnings.simplefilter("ignore", UserWarning)
        return x.coalesce().to_sparse_csr()



def product(x: Tensor, m: Tensor) -> Tensor:
    """``x @ m`` for a sparse CSR ``x (n, k)`` and a dense ``m (k, d)``, as a sum of ``m``'s rows weighted by
    ``x``'s values (``embedding_bag``: five times faster on a CPU than the sparse-dense product here)."""
    return nn.functional.embedding_bag(x.col_indices(), m, x.crow_indices()[:-1], mode="sum",
                                       per_sample_weights=x.values())


def transpose(x: Tensor) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta": the product is all we use
        warnings.simplefilter("ignore", UserWarning)
        return x.t().to_sparse_csr()


def logistic_regression(x: Tensor, y: Tensor, classes: int, C: float, start: tuple[Tensor, Tensor] | None = None,  # noqa: N803
                        max_iter: int = 150) -> tuple[Tensor, Tensor]:
    """``(weight (features, classes), bias (classes,))`` minimising ``C * sum_i CE(x_i W + b, y_i) + |W|^2 / 2``
    over the sparse rows ``x (n, features)`` (CSR): full-batch L-BFGS with a strong-Wolfe line search, from
    ``start`` (warm start) or zeros. The objective is divided by ``C * n`` (same minimiser, better scaled);
    its gradient is written out, ``x^T (softmax - onehot) / n + W / (C n)``: many times faster than autograd
    through the sparse product."""
    n = x.size(0)
    xt = transpose(x)  # (features, n)
    onehot = nn.functional.one_hot(y, classes).float()  # (n, classes)
    w = start[0].clone() if start else torch.zeros(x.size(1), classes)
    b = start[1].clone() if start else torch.zeros(classes)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10, tolerance_grad=1e-6,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        logp = torch.log_softmax(product(x, w) + b, -1)  # (n, classes)
        loss = -(logp * onehot).sum() / n + (w * w).sum() / (2 * C * n)
        delta = (logp.exp() - onehot) / n  # (n, classes): d loss / d logits
        w.grad, b.grad = product(xt, delta) + w / (C * n), delta.sum(0)
        return loss

    opt.step(closure)
    return w, b


def accuracy(x: Tensor, y: Tensor, w: Tensor, b: Tensor) -> float:
    return float(((product(x, w) + b).argmax(-1) == y).float().mean()) if len(y) else 0.0


def fit(train: list[tuple[list[int], int]], valid: list[tuple[list[int], int]], classes: int, orders: int,
        C: float = 0.0, min_df: int = 2) -> dict:  # noqa: N803  (scikit-learn's name)
    """The companion fitted on ``train`` ((ids, label) pairs; at most :data:`MAX_DOCS` of them, a fixed
    random sample beyond that): ``{"keys", "idf", "weight", "bias", "orders",
    "C", "valid_accuracy"}``; ``C`` as given, or (``C <= 0``) the one of :data:`C_GRID` most accurate on
    ``valid`` (the smaller on a tie; 4 without a valid split), ascending, each fit warm-started from the
    previous, until valid accuracy falls."""
    if len(train) > MAX_DOCS:  # a fixed random sample of a large corpus (its fit grows faster than linearly)
        train = [train[i] for i in sorted(random.Random(0).sample(range(len(train)), MAX_DOCS))]
    vocab, idf = vocabulary([ids for ids, _ in train], orders, min_df)
    x = matrix([ids for ids, _ in train], orders, vocab, idf)
    y = torch.tensor([label for _, label in train])
    scores, fitted, start = {}, {}, None
    grid = (C,) if C > 0 else C_GRID if valid else (4.0,)
    if len(grid) > 1:
        xv, yv = matrix([ids for ids, _ in valid], orders, vocab, idf), torch.tensor([label for _, label in valid])
    for c in grid:  # ascending, each from the last: stop once valid accuracy falls
        fitted[c] = start = logistic_regression(x, y, classes, c, start)
        if len(grid) > 1:
            scores[c] = accuracy(xv, yv, *fitted[c])
            if len(scores) > 1 and scores[c] < max(scores.values()):
                break
    best = max(fitted, key=lambda c: (scores.get(c, 0.0), -c))
    return {"keys": vocab, "idf": idf, "weight": fitted[best][0], "bias": fitted[best][1], "orders": orders,
            "C": best, "valid_accuracy": {f"{c:g}": a for c, a in scores.items()}}


class TfidfCompanion(nn.Module):
    """A fitted :func:`fit` as a module: ``(ids (batch, len), lengths (batch,)) -> logits (batch, classes)``.
    Its tensors are buffers outside the state dict (they live in the task state, fitted once): the
    optimiser, the moving average and the checkpoint's weights never see them."""

    def __init__(self, fitted: dict):
        super().__init__()
        self.orders = int(fitted["orders"])
        for name in ("keys", "idf", "weight", "bias"):
            self.register_buffer(name, fitted[name], persistent=False)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        if torch.compiler.is_exporting():  # ONNX has no sparse tensors: the same rows, dense
            return dense_features(ids, lengths, self.orders, self.keys, self.idf) @ self.weight + self.bias
        x = features(ids, lengths, self.orders, self.keys, self.idf)  # (batch, features), sparse
        return torch.sparse.mm(x, self.weight) + self.bias  # (batch, classes)


def probabilities(logits: Tensor) -> Tensor:
    """``(batch, classes)`` from one logit (two classes, sigmoid) or one per class (softmax)."""
    if logits.size(-1) == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], -1)
    return torch.softmax(logits.float(), -1)


class WithTfidf(nn.Module):
    """``WithTfidf(model, companion, share)``: in training, ``model``'s outputs unchanged (only it learns);
    in evaluation ``(logits, token_weights)`` with the logits of ``share * p_tfidf + (1 - share) * p_model``
    (log-probabilities; one logit ``log(p1 / p0)`` when the model has one), the token weights the
    model's. ``share`` may change between evaluations (chosen on valid: :meth:`parts`)."""

    def __init__(self, model: nn.Module, companion: TfidfCompanion, share: float = 0.5):
        super().__init__()
        self.model, self.companion, self.share = model, companion, float(share)
        # every rank fits the same companion from the same data: DDP need not broadcast it at each step
        self._ddp_params_and_buffers_to_ignore = [f"companion.{name}" for name, _ in companion.named_buffers()]

    def explained_attention(self) -> list:
        return self.model.explained_attention()

    def parts(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
        """``(p_model, p_tfidf, token_weights, one)``: the two votes apart (``(batch, classes)`` each), and
        whether the model has one logit."""
        logits, w = self.model(ids, lengths)
        p_tfidf = torch.softmax(self.companion(ids, lengths).float(), -1)
        return probabilities(logits), p_tfidf, w, logits.size(-1) == 1

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            return self.model(ids, lengths)
        p_model, p_tfidf, w, one = self.parts(ids, lengths)
        return mixed_logits(p_model, p_tfidf, self.share, one), w


def mix(p_model: Tensor, p_tfidf: Tensor, share: float) -> Tensor:
    return share * p_tfidf + (1 - share) * p_model


def mixed_logits(p_model: Tensor, p_tfidf: Tensor, share: float, one: bool = False) -> Tensor:
    p = mix(p_model, p_tfidf, share).clamp(min=1e-30).log()  # (batch, classes)
    return p[:, 1:] - p[:, :1] if one else p


def best_share(p_model: Tensor, p_tfidf: Tensor, score) -> tuple[float, dict]:
    """The share of :data:`SHARES` whose mixed predictions ``score(pred)`` highest (the smaller on a tie)
    and every share's score."""
    scores = {s: score(mix(p_model, p_tfidf, s).argmax(-1)) for s in SHARES}
    return max(SHARES, key=lambda s: (scores[s], -s)), scores


def orders_for(units: str) -> int:
    """The n-gram orders of the companion: 1..5 over characters, 1..2 over words (the baseline's)."""
    return 5 if units == "char" else 2

