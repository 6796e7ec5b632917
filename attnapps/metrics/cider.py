"""CIDEr-D (Vedantam et al. 2015), as computed by the COCO caption evaluation (``pycocoevalcap``).

For each image, hypothesis and references become tf-idf vectors of their 1..4-grams; the document
frequency of an n-gram is the number of images whose references contain it, over the evaluated corpus.
Per n-gram order: the cosine similarity with each reference where the hypothesis' weights are clipped
by the reference's (``min(h, r) * r``, the "-D" that stops repetition gaming), times a Gaussian length
penalty ``exp(-delta^2 / (2 sigma^2))`` with sigma 6. The image's score is the mean over orders and
references, times 10; the corpus score is the mean over images.

Faithful to the reference code, including its length: ``delta`` is computed from the number of
bigrams (``len(words) - 1``), as ``cider_scorer.py`` does. Inputs are pre-tokenized (lists of words);
the COCO evaluation tokenizes with the PTB tokenizer first.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence


def _ngrams(words: Sequence[str], n: int = 4) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def cider_d(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
            n: int = 4, sigma: float = 6.0) -> tuple[float, list[float]]:
    """``(corpus CIDEr-D, per-image scores)`` for tokenized ``hypotheses[i]`` against ``references[i]``."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0, []
    refs = [[_ngrams(r, n) for r in rs] for rs in references]
    hyps = [_ngrams(h, n) for h in hypotheses]
    df: Counter = Counter()
    for rs in refs:
        df.update(set(g for r in rs for g in r))
    log_n = math.log(float(len(refs)))

    def vector(counts: Counter):
        vec = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = w = tf * (log_n - math.log(max(1.0, df[gram])))
            norm[k] += w * w
            if k == 1:  # the reference implementation's length: the number of bigrams
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for h, rs in zip(hyps, refs):
        vh, nh, lh = vector(h)
        total = 0.0
        for r in rs:
            vr, nr, lr = vector(r)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
            for k in range(n):
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total += val * penalty
        scores.append(total / n / max(1, len(rs)) * 10.0)
    return sum(scores) / len(scores), scores
