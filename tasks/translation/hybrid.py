"""``decode.hybrid``: the word-by-word baseline's translation joins the beam's candidates, and one
linear score, tuned on valid, chooses among them -- system combination by re-ranking, as phrase-based
MT tuned its feature weights on a development set (Och 2003, "Minimum Error Rate Training").

For each source sentence the pool is the beam's finished hypotheses plus the word-by-word IBM Model 1
translation (:mod:`.baseline`, its settings chosen on valid, its log-probability under the model
taken by forcing it through the decoder). Each candidate ``y`` of source ``x`` has the features

    model       log P(y | x) / lp(|y| + 1)      the search's own length-normalised score (weight 1)
    channel     log P(x | y)                    word IBM Model 1 target -> source (decode.channel's)
    word_by_word  1 for the word-by-word candidate
    length      words(y) / words(x)
    copied      source words unseen in training that y repeats (names, numbers, codes)
    unknown     word_by_word * share of the source's words unseen in training

and the answer is the candidate with the highest ``sum_k w_k f_k``. The weights are chosen after
training on the valid split, by grid search, for the highest sacreBLEU + chrF of the chosen
translations (from each candidate's sufficient statistics, so the whole grid costs seconds); test is
decoded once with them. Where the model is sure of a fluent translation it wins; where its candidates
leave the source's words unexplained -- or the sentence is full of words it never saw -- the
word-by-word translation can win. The run's report says how often it did.
"""

from __future__ import annotations

import itertools

import numpy as np

FEATURES = ("model", "channel", "word_by_word", "length", "copied", "unknown")
# the grid over every weight but the model's (fixed at 1: the score's scale)
GRID = {"channel": (0.0, 0.25, 0.5, 1.0), "word_by_word": (-6.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0),
        "length": (0.0, 1.0), "copied": (0.0, 1.0, 3.0, 6.0), "unknown": (0.0, 5.0, 10.0, 20.0)}


def features(model_scores: list[float], lengths: list[int], channel: list[float], words: list[list[str]],
             source_words: list[str], known: set[str], alpha: float, word_by_word: int) -> np.ndarray:
    """``(candidates, len(FEATURES))`` for one source sentence: ``model_scores`` the candidates' total
    log P(y | x), ``lengths`` their pieces, ``channel`` their log P(x | y), ``words`` their words;
    ``known`` the training's source words; ``word_by_word`` the index of that candidate (-1: none)."""
    n = len(model_scores)
    lp = ((5.0 + np.asarray(lengths, dtype=float) + 1.0) / 6.0) ** alpha  # GNMT lp(|y| + 1), as the beam's
    unseen = [w for w in source_words if w not in known]
    wbw = np.zeros(n)
    if word_by_word >= 0:
        wbw[word_by_word] = 1.0
    return np.stack([np.asarray(model_scores, dtype=float) / lp, np.asarray(channel, dtype=float), wbw,
                     np.asarray([len(w) for w in words], dtype=float) / max(len(source_words), 1),
                     np.asarray([sum(u in set(w) for u in unseen) for w in words], dtype=float),
                     wbw * len(unseen) / max(len(source_words), 1)], 1)


def grid() -> np.ndarray:
    """Every weight vector of :data:`GRID` ``(G, len(FEATURES))``, the model's weight 1."""
    return np.array([(1.0, *w) for w in itertools.product(*(GRID[f] for f in FEATURES[1:]))])


def choose(feats: list[np.ndarray], weights: np.ndarray) -> list[int]:
    """The chosen candidate of each sentence: the highest ``feats @ weights`` (ties: the first)."""
    return [int(np.argmax(f @ weights)) for f in feats]


def tune(feats: list[np.ndarray], candidates: list[list[str]], refs: list[str], bleu_tokenize: str
         ) -> tuple[np.ndarray, dict]:
    """The weights of :func:`grid` with the highest corpus BLEU + chrF on these sentences (ties: the
    first in grid order), and ``{"bleu", "chrf", "share"}`` with them (``share``: the part of sentences
    whose choice is the word-by-word candidate, i.e. its feature is 1)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(tokenize=bleu_tokenize), CHRF()
    width = max(len(f) for f in feats)
    n, k = len(feats), len(FEATURES)
    f_all = np.full((n, width, k), 0.0)
    valid = np.zeros((n, width), dtype=bool)
    b_stats, c_stats = None, None
    for i, (f, cands) in enumerate(zip(feats, candidates)):
        f_all[i, :len(f)], valid[i, :len(f)] = f, True
        b = np.asarray(bleu._extract_corpus_statistics(cands, [[refs[i]] * len(cands)]), dtype=float)
        c = np.asarray(chrf._extract_corpus_statistics(cands, [[refs[i]] * len(cands)]), dtype=float)
        if b_stats is None:
            b_stats, c_stats = np.zeros((n, width, b.shape[1])), np.zeros((n, width, c.shape[1]))
        b_stats[i, :len(cands)], c_stats[i, :len(cands)] = b, c
    weights = grid()
    best, best_score, best_scores = 0, -np.inf, None
    for start in range(0, len(weights), 64):  # (64, n, width) scores at a time
        w = weights[start:start + 64]
        scores = np.where(valid[None], np.einsum("nck,gk->gnc", f_all, w), -np.inf)
        picks = scores.argmax(-1)  # (g, n)
        rows = np.arange(n)
        for g in range(len(w)):
            b = b_stats[rows, picks[g]].sum(0)
            c = c_stats[rows, picks[g]].sum(0)
            s_b = bleu._compute_score_from_stats([int(round(x)) for x in b]).score  # sums of counts
            s_c = chrf._compute_score_from_stats([int(round(x)) for x in c]).score
            if s_b + s_c > best_score:
                best, best_score = start + g, s_b + s_c
                share = float(f_all[rows, picks[g], FEATURES.index("word_by_word")].mean())
                best_scores = {"bleu": s_b, "chrf": s_c, "share": share}
    return weights[best], best_scores

