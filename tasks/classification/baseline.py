"""The practitioner's baseline: TF-IDF (word 1-2-grams) + logistic regression, scikit-learn.

scikit-learn is a dev-only dependency (``pip install -e ".[dev]"``); without it the report says so.
``scripts/classification_baseline.py`` runs it from the command line.
"""

from __future__ import annotations


def tfidf_logreg(train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int = 0) -> dict | None:
    """Fit on ``train`` (text, label) pairs, score on ``test``: ``{"accuracy", "macro_f1"}`` or None
    when scikit-learn is not installed."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        return None
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x_train = vec.fit_transform([t for t, _ in train])
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed)
    clf.fit(x_train, [y for _, y in train])
    pred = clf.predict(vec.transform([t for t, _ in test]))
    gold = [y for _, y in test]
    return {"accuracy": float(accuracy_score(gold, pred)), "macro_f1": float(f1_score(gold, pred, average="macro"))}
