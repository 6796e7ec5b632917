"""Nearest-neighbour captioning over the cached image features: the baseline every captioning report
carries, and the retrieved memory of the retrieval-augmented decoder.

An image is represented by its mean region feature, L2-normalised; neighbours are the training
images of highest cosine similarity (Devlin et al. 2015, "Exploring Nearest Neighbor Approaches for
Image Captioning"):

* **1-NN**: the consensus caption of the single nearest training image;
* **k-NN consensus**: among all captions of the ``k`` nearest training images (at most 60, the nearest
  images' first), the one with the highest mean similarity to the others -- the "consensus caption" --
  with similarity the CIDEr-D of one caption against another (tf-idf n-grams 1..4 weighted by document
  frequencies over the training images, Gaussian length penalty). ``k`` is chosen on the valid split.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import torch
from torch import Tensor

from attnapps.metrics import cider_d, corpus_bleu_nltk

Caption = Sequence[str]
K_CHOICES = (1, 3, 5, 10, 20, 40)
MAX_CANDIDATES = 60  # consensus among at most this many captions (O(n^2) similarities per image)


def global_features(store: Tensor, chunk: int = 1024) -> Tensor:
    """Region features ``(images, regions, channels)`` -> unit vectors ``(images, channels)`` (float)."""
    out = [store[i:i + chunk].float().mean(1) for i in range(0, store.size(0), chunk)]  # (n, channels)
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def neighbours(queries: Tensor, keys: Tensor, k: int, exclude: Tensor | None = None, chunk: int = 1024) -> Tensor:
    """Indices ``(queries, k)`` of the ``k`` most similar ``keys`` (unit vectors, cosine), best first.
    ``exclude (queries,)``: a key index each query may not return (a training image is not its own
    neighbour); -1 = none."""
    k = min(k, keys.size(0) - (exclude is not None))
    out = []
    for s in range(0, queries.size(0), chunk):
        sim = queries[s:s + chunk] @ keys.t()  # (chunk, keys)
        if exclude is not None:
            ex = exclude[s:s + chunk]
            rows = (ex >= 0).nonzero().squeeze(1)
            sim[rows, ex[rows]] = float("-inf")
        out.append(sim.topk(k, dim=-1).indices)
    return torch.cat(out)


class ConsensusScorer:
    """CIDEr-D between two captions with document frequencies fixed from the training images."""

    def __init__(self, train_captions: Sequence[Sequence[Caption]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df: Counter = Counter()
        for caps in train_captions:
            self.df.update({g for c in caps for g in self._grams(c)})
        self.log_n = math.log(max(2.0, float(len(train_captions))))
        self._cache: dict[tuple, tuple] = {}

    def _grams(self, c: Caption):
        return [tuple(c[i:i + m]) for m in range(1, self.n + 1) for i in range(len(c) - m + 1)]

    def vector(self, c: Caption):
        key = tuple(c)
        if key not in self._cache:
            vec = [{} for _ in range(self.n)]
            for g, tf in Counter(self._grams(c)).items():
                vec[len(g) - 1][g] = tf * (self.log_n - math.log(max(1.0, self.df[g])))
            norms = [math.sqrt(sum(w * w for w in v.values())) for v in vec]
            self._cache[key] = (vec, norms, len(c))
        return self._cache[key]

    def similarity(self, a: Caption, b: Caption) -> float:
        (va, na, la), (vb, nb, lb) = self.vector(a), self.vector(b)
        total = 0.0
        for m in range(self.n):
            if na[m] == 0 or nb[m] == 0:
                continue
            dot = sum(min(w, vb[m][g]) * vb[m][g] for g, w in va[m].items() if g in vb[m])  # CIDEr-D clipping
            total += dot / (na[m] * nb[m])
        return total / self.n * math.exp(-((la - lb) ** 2) / (2 * self.sigma ** 2)) * 10.0

    def mean_similarity(self, caption: Caption, others: Sequence[Caption]) -> float:
        return sum(self.similarity(caption, o) for o in others) / max(1, len(others))


def knn_captions(neighbour_ids: Tensor, train_captions: Sequence[Sequence[Caption]], k: int,
                 scorer: ConsensusScorer, max_candidates: int = MAX_CANDIDATES) -> list[list[str]]:
    """The consensus caption among the captions of each query's ``k`` nearest training images (at most
    ``max_candidates`` of them, the nearest images' first)."""
    return knn_captions_by_k(neighbour_ids, train_captions, [k], scorer, max_candidates)[k]


def knn_captions_by_k(neighbour_ids: Tensor, train_captions: Sequence[Sequence[Caption]], ks: Sequence[int],
                      scorer: ConsensusScorer, max_candidates: int = MAX_CANDIDATES) -> dict[int, list[list[str]]]:
    """:func:`knn_captions` for several ``k`` at once: each query's candidate similarities are computed
    once, for the largest ``k``, and every smaller ``k`` takes a prefix (O(candidates^2) per query)."""
    out: dict[int, list[list[str]]] = {k: [] for k in ks}
    for row in neighbour_ids[:, : max(ks)].tolist():
        cands, owner = [], []
        for rank, j in enumerate(row):
            for c in train_captions[j]:
                cands.append(c)
                owner.append(rank)
        cands, owner = cands[:max_candidates], owner[:max_candidates]
        sim = [[scorer.similarity(a, b) if i != j else 0.0 for j, b in enumerate(cands)] for i, a in enumerate(cands)]
        for k in ks:
            n = sum(1 for r in owner if r < k)  # the candidates from the k nearest images
            if n <= 2:
                best = 0
            else:
                best = max(range(n), key=lambda i: (sum(sim[i][:n]), -i))
            out[k].append(list(cands[best]))
    return out


def score(hyps: Sequence[Caption], refs: Sequence[Sequence[Caption]]) -> dict[str, float]:
    out = corpus_bleu_nltk(hyps, refs)
    out["cider"] = cider_d(hyps, refs)[0]
    return out


def retrieval_baseline(train: tuple[Tensor, Sequence[Sequence[Caption]]], valid: tuple[Tensor, Sequence],
                       test: tuple[Tensor, Sequence], ks: Sequence[int] = K_CHOICES) -> dict:
    """1-NN and k-NN consensus captions for valid and test, ``k`` chosen by valid CIDEr-D.

    Each argument is ``(unit features (n, channels), captions per image)``. Returns ``{"k", "valid_by_k":
    {k: cider}, "valid": scores, "test": scores, "nn1": {"valid", "test"}, "test_captions": [...], "valid_captions": [...]}``."""
    keys, train_caps = train
    scorer = ConsensusScorer(train_caps)
    kmax = min(max(ks), keys.size(0))
    nb_valid = neighbours(valid[0], keys, kmax) if len(valid[1]) else None
    nb_test = neighbours(test[0], keys, kmax)
    by_k = {}
    if nb_valid is not None:
        valid_caps = knn_captions_by_k(nb_valid, train_caps, [k for k in ks if k <= kmax], scorer)
        by_k = {k: cider_d(caps, valid[1])[0] for k, caps in valid_caps.items()}
    k = max(by_k, key=lambda x: (by_k[x], -x)) if by_k else min(5, kmax)
    test_caps = knn_captions(nb_test, train_caps, k, scorer)
    out = {"k": k, "valid_by_k": by_k, "test": score(test_caps, test[1]), "test_captions": test_caps,
           "nn1": {"test": score(knn_captions(nb_test, train_caps, 1, scorer), test[1])}}
    if nb_valid is not None:
        out["valid_captions"] = valid_caps.get(k) or knn_captions(nb_valid, train_caps, k, scorer)
        out["valid"] = score(out["valid_captions"], valid[1])
        out["nn1"]["valid"] = score(valid_caps.get(1) or knn_captions(nb_valid, train_caps, 1, scorer), valid[1])
    return out
