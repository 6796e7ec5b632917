"""Metric helpers against their reference implementations and hand-computed values."""

import math

import pytest
import sacrebleu

from attnapps.metrics import bits_per_char, classification_report, corpus_bleu_nltk, perplexity, sacrebleu_scores


def test_sacrebleu_scores_equal_sacrebleu_and_carry_signatures():
    hyps = ["the cat sat on the mat .", "a dog barks loudly"]
    refs = ["the cat sat on a mat .", "the dog barks loudly"]
    s = sacrebleu_scores(hyps, refs)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert s["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert sacrebleu_scores(refs, refs)["bleu"] == pytest.approx(100.0)


def test_nltk_bleu_hand_checked():
    ref = "the cat is on the mat".split()
    assert corpus_bleu_nltk([ref], [[ref]])["bleu4"] == pytest.approx(1.0)
    hyp = "the the the the the the".split()
    # clipped unigram precision 2/6, brevity penalty 1 (same length)
    assert corpus_bleu_nltk([hyp], [[ref, "there is a cat on the mat".split()]], max_n=1)["bleu1"] == pytest.approx(2 / 6)
    hyp2 = "the cat on the mat".split()  # 5 words vs closest ref 6: BP = exp(1 - 6/5)
    assert corpus_bleu_nltk([hyp2], [[ref]], max_n=1)["bleu1"] == pytest.approx(math.exp(1 - 6 / 5))


def test_classification_report_hand_values():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    r = classification_report(gold, pred, 3)
    assert r["accuracy"] == pytest.approx(4 / 6)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert [c["f1"] for c in r["per_class"]] == pytest.approx(f1)
    assert r["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_perplexity_and_bpc_of_uniform_distribution():
    n = 100
    nll = n * math.log(4)  # uniform over 4 symbols
    assert perplexity(nll, n) == pytest.approx(4.0)
    assert bits_per_char(nll, n) == pytest.approx(2.0)
    assert bits_per_char(nll, 2 * n) == pytest.approx(1.0)  # two characters per token
