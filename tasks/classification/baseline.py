"""The practitioner's baseline: TF-IDF + logistic regression, scikit-learn -- over word 1-2-grams for
text written with spaces between words, over character 1-5-grams where it is not (Chinese, Japanese,
Thai, ...: a word baseline would see whole clauses as words and hide what the model's tokenizer gets
wrong) or where words are too sparse to learn from -- the same rule as ``tokenizer.kind=auto``
(:func:`auto.choose_tokenizer`). The n-gram ranges were chosen on the valid splits of the development
corpora (README).

scikit-learn is a dev-only dependency (``pip install -e ".[dev]"``); without it the report says so.
``scripts/classification_baseline.py`` runs it from the command line.
"""

from __future__ import annotations

from . import auto


def features(train_texts: list[str]) -> str:
    """``word`` or ``char``: the n-grams the baseline uses for this training text."""
    return auto.text_units(train_texts)[0]


def describe(kind: str) -> str:
    return "TF-IDF (character 1-5-grams) + logistic regression" if kind == "char" else \
        "TF-IDF (word 1-2-grams) + logistic regression"


def tfidf_logreg(train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int = 0,
                 kind: str = "auto", C: float = 4.0) -> dict | None:  # noqa: N803  (scikit-learn's name)
    """Fit on ``train`` (text, label) pairs, score on ``test``: ``{"accuracy", "macro_f1", "features"}``
    or None when scikit-learn is not installed. ``kind``: ``word``, ``char`` or ``auto`` (:func:`features`);
    ``C``: the inverse strength of the L2 penalty."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        return None
    if kind == "auto":
        kind = features([t for t, _ in train])
    if kind == "char":
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), min_df=2, sublinear_tf=True)
    else:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x_train = vec.fit_transform([t for t, _ in train])
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(x_train, [y for _, y in train])
    pred = clf.predict(vec.transform([t for t, _ in test]))
    gold = [y for _, y in test]
    return {"accuracy": float(accuracy_score(gold, pred)), "macro_f1": float(f1_score(gold, pred, average="macro")),
            "features": kind}
