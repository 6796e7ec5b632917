"""The TF-IDF companion (tasks/classification/tfidf.py) against scikit-learn, the reference it re-implements,
and the vote it casts with the model."""

import random

import pytest
import torch
from torch import nn

from attnapps.data.batching import pad_batch
from attnapps_tasks.classification import tfidf


def grams(ids, orders):
    return [tuple(ids[i:i + n]) for n in range(1, orders + 1) for i in range(len(ids) - n + 1)]


def docs(n, seed=0, vocab=12, labels=3):
    """Random token-id texts whose label is cued by one token (label + 4), with noise tokens around it."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.randrange(labels)
        ids = [rng.randrange(vocab) + 8 for _ in range(rng.randint(2, 7))]
        ids.insert(rng.randrange(len(ids) + 1), y + 4)
        out.append((ids, y))
    return out


def test_tfidf_rows_equal_scikit_learns_vectorizer():
    """Same n-grams, document frequencies, smoothed idf, sublinear tf and unit rows as
    ``TfidfVectorizer(min_df=2, sublinear_tf=True)`` over the same 1..3-grams: the Gram matrices (the rows'
    dot products, which do not depend on the order of the columns) and the vocabulary sizes agree."""
    text = pytest.importorskip("sklearn.feature_extraction.text")
    data = [ids for ids, _ in docs(60, vocab=5)]
    vocab, idf = tfidf.vocabulary(data, 3, min_df=2)
    ids, lengths = pad_batch(data)
    ours = tfidf.features(ids, lengths, 3, vocab, idf).to_dense()
    ref = text.TfidfVectorizer(analyzer=lambda d: grams(d, 3), min_df=2, sublinear_tf=True).fit(data)
    theirs = torch.tensor(ref.transform(data).toarray(), dtype=torch.float32)
    assert len(vocab) == len(ref.vocabulary_)
    assert torch.allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-5)
    assert sorted(idf.tolist()) == pytest.approx(sorted(ref.idf_.tolist()), abs=1e-5)


def test_padding_and_unknown_ngrams_add_nothing():
    data = [ids for ids, _ in docs(40)]
    vocab, idf = tfidf.vocabulary(data, 2)
    one = tfidf.features(*pad_batch([data[0]]), 2, vocab, idf).to_dense()
    padded = tfidf.features(*pad_batch([data[0], [9] * 30]), 2, vocab, idf).to_dense()[:1]
    assert torch.allclose(one, padded)
    assert tfidf.features(*pad_batch([[999, 998]]), 2, vocab, idf).to_dense().abs().sum() == 0


def test_logistic_regression_matches_scikit_learn():
    linear = pytest.importorskip("sklearn.linear_model")
    train = docs(200, seed=1)
    vocab, idf = tfidf.vocabulary([ids for ids, _ in train], 2)
    x = tfidf.matrix([ids for ids, _ in train], 2, vocab, idf)
    y = torch.tensor([label for _, label in train])
    w, b = tfidf.logistic_regression(x, y, 3, C=4.0, max_iter=500)
    ours = torch.softmax(x @ w + b, -1)
    ref = linear.LogisticRegression(C=4.0, max_iter=5000, tol=1e-8).fit(x.to_dense().numpy(), y.numpy())
    theirs = torch.tensor(ref.predict_proba(x.to_dense().numpy()), dtype=torch.float32)
    assert torch.allclose(ours, theirs, atol=2e-3)


def test_fit_chooses_c_on_valid_and_stops_once_accuracy_falls():
    fitted = tfidf.fit(docs(300, seed=2), docs(80, seed=3), classes=3, orders=2)
    scores = {float(c): a for c, a in fitted["valid_accuracy"].items()}
    assert fitted["C"] == max(scores, key=lambda c: (scores[c], -c))
    tried = sorted(scores)
    assert tried == list(tfidf.C_GRID[: len(tried)])  # ascending from the smallest
    if len(tried) < len(tfidf.C_GRID):  # stopped early: the last one tried fell below the best before it
        assert scores[tried[-1]] < max(scores[c] for c in tried[:-1])
    assert tfidf.fit(docs(50), [], 3, 2)["C"] == 4.0 and tfidf.fit(docs(50), docs(20), 3, 2, C=2.5)["C"] == 2.5


def test_best_share_by_hand():
    # text 1 needs a share below 4/7, text 3 one above 1/3, text 2 is right whatever the share: only 1/2 gets all
    p_model = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    p_tfidf = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    gold = torch.tensor([0, 0, 1])
    share, scores = tfidf.best_share(p_model, p_tfidf, lambda pred: float((pred == gold).float().mean()))
    assert scores == pytest.approx({0.0: 2 / 3, 0.25: 2 / 3, 0.5: 1.0, 0.75: 2 / 3, 1.0: 2 / 3}) and share == 0.5
    # a tie goes to the smaller share: the model's own vote weighs more
    assert tfidf.best_share(p_model, p_model, lambda pred: 1.0)[0] == 0.0


class Fixed(nn.Module):
    """A stand-in classifier with fixed logits, whatever the text."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, ids, lengths):
        return self.logits.expand(ids.size(0), -1) * self.scale, torch.ones(ids.shape) / ids.size(1)


@pytest.mark.parametrize("model_logits", [torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[1.5]])])
def test_the_vote_mixes_probabilities_and_training_sees_the_model_alone(model_logits):
    classes = max(2, model_logits.size(-1))
    fitted = tfidf.fit(docs(100, labels=classes), [], classes, 2)
    both = tfidf.WithTfidf(Fixed(model_logits), tfidf.TfidfCompanion(fitted), share=0.25)
    ids, lengths = pad_batch([ids for ids, _ in docs(4, seed=9, labels=classes)])
    logits, _ = both.train()(ids, lengths)
    assert torch.equal(logits, model_logits.expand(4, -1))  # the loss trains the model only
    logits, w = both.eval()(ids, lengths)
    p_model = tfidf.probabilities(model_logits).expand(4, -1)
    p_tfidf = torch.softmax(both.companion(ids, lengths), -1)
    assert torch.allclose(tfidf.probabilities(logits), 0.25 * p_tfidf + 0.75 * p_model, atol=1e-5)
    assert logits.shape == (4, model_logits.size(-1)) and torch.equal(w, torch.ones(ids.shape) / ids.size(1))
    assert not any(name.startswith("companion") for name in both.state_dict())  # saved in the task state


def test_a_large_corpus_is_fitted_on_a_fixed_random_sample(monkeypatch):
    """Past MAX_DOCS training documents the companion sees a fixed random sample of them (the same at
    every fit), not the first ones."""
    monkeypatch.setattr(tfidf, "MAX_DOCS", 40)
    seen, real = [], tfidf.vocabulary
    monkeypatch.setattr(tfidf, "vocabulary", lambda docs, *a, **k: (seen.append(docs), real(docs, *a, **k))[1])
    train = [([i + 100, 1 + i % 2], i % 2) for i in range(200)]  # token i+100 marks document i
    first = tfidf.fit(train, [], 2, 1, C=1.0)
    second = tfidf.fit(train, [], 2, 1, C=1.0)
    assert len(seen[0]) == 40 and seen[0] == seen[1]
    picked = sorted(doc[0] - 100 for doc in seen[0])
    assert len(set(picked)) == 40 and picked != list(range(40)) and max(picked) >= 100
    assert torch.equal(first["weight"], second["weight"])
    assert len(first["keys"]) == 2  # tokens 1 and 2 (min_df 2: each mark is in one document)
