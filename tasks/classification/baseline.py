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


C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)  # the inverse L2 strengths tried on the valid split


class Baseline:
    """A fitted TF-IDF + logistic regression: ``predict(texts)``; ``C`` (chosen on valid, or given),
    ``kind`` (word or char n-grams), ``valid_accuracy`` ``{C: accuracy}`` of the grid it was chosen from."""

    def __init__(self, vectorizer, classifier, kind: str, C: float, valid_accuracy: dict):  # noqa: N803
        self.vectorizer, self.classifier, self.kind, self.C = vectorizer, classifier, kind, C
        self.valid_accuracy = valid_accuracy

    def predict(self, texts: list[str]) -> list[str]:
        return list(self.classifier.predict(self.vectorizer.transform(texts)))

    def score(self, examples: list[tuple[str, str]]) -> dict:
        """``{"accuracy", "macro_f1", "features", "C"}`` on (text, label) pairs."""
        from sklearn.metrics import accuracy_score, f1_score

        gold, pred = [y for _, y in examples], self.predict([t for t, _ in examples])
        return {"accuracy": float(accuracy_score(gold, pred)), "macro_f1": float(f1_score(gold, pred, average="macro")),
                "features": self.kind, "C": self.C}


def fit(train: list[tuple[str, str]], valid: list[tuple[str, str]] | None = None, seed: int = 0,
        kind: str = "auto", C: float | None = None) -> Baseline | None:  # noqa: N803  (scikit-learn's name)
    """Fit on ``train`` (text, label) pairs; ``C`` (the inverse strength of the L2 penalty) given, or chosen
    from :data:`C_GRID` by accuracy on ``valid`` (the smaller on a tie; 4 without a valid split) -- tuned
    on valid as carefully as the model beside it. None when scikit-learn is not installed."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    if kind == "auto":
        kind = features([t for t, _ in train])
    if kind == "char":
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), min_df=2, sublinear_tf=True)
    else:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x_train, y_train = vec.fit_transform([t for t, _ in train]), [y for _, y in train]

    def logreg(c):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)

    scores = {}
    if C is None and valid:
        x_valid, y_valid = vec.transform([t for t, _ in valid]), [y for _, y in valid]
        fitted = {}
        for c in C_GRID:
            fitted[c] = logreg(c)
            scores[c] = float((fitted[c].predict(x_valid) == y_valid).mean())
        C = max(C_GRID, key=lambda c: (scores[c], -c))
        return Baseline(vec, fitted[C], kind, C, scores)
    C = 4.0 if C is None else C
    return Baseline(vec, logreg(C), kind, C, scores)


def tfidf_logreg(train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int = 0,
                 kind: str = "auto", C: float | None = None,  # noqa: N803
                 valid: list[tuple[str, str]] | None = None) -> dict | None:
    """Fit (:func:`fit`) and score on ``test``: ``{"accuracy", "macro_f1", "features", "C"}``, or None
    without scikit-learn."""
    base = fit(train, valid, seed, kind, C)
    return None if base is None else base.score(test)
