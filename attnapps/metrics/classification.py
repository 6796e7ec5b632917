"""Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from typing import Sequence


def classification_report(gold: Sequence[int], pred: Sequence[int], num_classes: int) -> dict:
    """``{"accuracy", "macro_f1", "per_class": [{"precision", "recall", "f1", "support"}], "confusion"}``.

    ``confusion[g][p]`` counts gold class ``g`` predicted as ``p``. A class with no prediction and no
    gold example gets F1 = 0 and does not count in the macro average unless it has support or
    predictions (like scikit-learn's ``labels`` = the classes present).
    """
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for g, p in zip(gold, pred):
        confusion[g][p] += 1
    per_class, f1s = [], []
    for c in range(num_classes):
        tp = confusion[c][c]
        predicted = sum(confusion[g][c] for g in range(num_classes))
        support = sum(confusion[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"precision": precision, "recall": recall, "f1": f1, "support": support})
        if support or predicted:
            f1s.append(f1)
    n = len(gold)
    return {"accuracy": sum(confusion[c][c] for c in range(num_classes)) / n if n else 0.0,
            "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0, "per_class": per_class, "confusion": confusion}
