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


def test_cider_d_clips_repeated_ngrams_known_value():
    """Two images (idf of each word log 2). 'cat cat' against the reference 'cat': the unigram weight
    2·log 2 is clipped to the reference's log 2, so the order-1 cosine is 1/2 (1 without clipping);
    no bigram in the reference; length penalty exp(-1/72) (1 bigram vs 0). Score 10 · 0.5 · e^(-1/72) / 4."""
    from attnapps.metrics import cider_d

    _, scores = cider_d([["cat", "cat"], ["dog"]], [[["cat"]], [["dog"]]])
    assert scores[0] == pytest.approx(10 * 0.5 * math.exp(-1 / 72) / 4)
    assert scores[1] == pytest.approx(10 * 1.0 / 4)
    # repetition never pays: more copies of a reference word score lower, not higher
    _, more = cider_d([["cat"] * 5, ["dog"]], [[["cat"]], [["dog"]]])
    assert more[0] < scores[0]


@pytest.mark.parametrize("seed", range(5))
def test_classification_report_equals_sklearn(seed):
    import random

    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rng = random.Random(seed)
    k = rng.randint(2, 6)
    gold = [rng.randrange(k) for _ in range(rng.randint(1, 200))]
    pred = [g if rng.random() < 0.6 else rng.randrange(k) for g in gold]
    r = classification_report(gold, pred, k)
    labels = list(range(k))
    assert r["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert r["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))
    p, rc, f, _ = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    assert [c["precision"] for c in r["per_class"]] == pytest.approx(list(p))
    assert [c["recall"] for c in r["per_class"]] == pytest.approx(list(rc))
    assert [c["f1"] for c in r["per_class"]] == pytest.approx(list(f))
    assert r["confusion"] == confusion_matrix(gold, pred, labels=labels).tolist()


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_bits_per_character_counts_the_characters_of_the_scored_text(tmp_path, kind):
    """The same text (with runs of spaces, which sentencepiece does not keep) scored by a uniform model:
    bits / characters of the text itself, whatever the tokenizer; a denominator taken from the decoded
    pieces would make sentencepiece look better than it is."""
    import torch
    from omegaconf import OmegaConf

    from attnapps_tasks.generation.task import GenerationConfig, GenerationTask

    line = "line {}:  the   cat    sat on the mat.\n"
    test_text = "".join(line.format(i) for i in range(40))  # the test file: its characters are the denominator
    (tmp_path / "train.txt").write_text("".join(line.format(i) for i in range(300)))
    (tmp_path / "valid.txt").write_text("".join(line.format(i) for i in range(20)))
    (tmp_path / "test.txt").write_text(test_text)
    cfg = OmegaConf.merge(OmegaConf.structured(GenerationConfig), OmegaConf.from_dotlist([
        f"data.path={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}", f"tokenizer.kind={kind}",
        "tokenizer.vocab_size=60", "model.arch=transformer", "model.context=16", "model.d_model=16", "model.layers=1", "model.heads=2"]))
    task = GenerationTask(cfg)
    task.load_data()
    model = task.build_model()
    with torch.no_grad():
        model.embedding.weight.zero_()  # every logit 0: log2(V) bits per token
    v, ids = task.tok.vocab_size, task.ids["test"]
    # the first token is not predicted: (tokens - 1) * log2(V) bits over the characters those tokens cover
    expected = (len(ids) - 1) * math.log2(v) / (len(test_text) * (len(ids) - 1) / len(ids))
    if kind == "char":  # one token per character: exactly log2(V) bits per character
        assert len(ids) == len(test_text) and expected == pytest.approx(math.log2(v))
    assert task.evaluate(model, "test", final=True).metrics["bpc"] == pytest.approx(expected, rel=1e-5)
    if kind == "sentencepiece":
        assert len(task.decode(list(ids))) < len(test_text)  # the pieces lost the runs of spaces
