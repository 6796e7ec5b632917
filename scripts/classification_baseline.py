"""TF-IDF + logistic regression on a classification dataset, for comparison (word 1-2-grams, or character
1-5-grams for text written without spaces; ``--features`` forces one).

    python scripts/classification_baseline.py [--path DIR] [--format tsv|csv|imdb] [--features auto|word|char] [--C C]

``C`` (the inverse strength of the L2 penalty) is chosen on the valid split from 0.25, 1, 4, 16, 64 unless
given. Reads data exactly as ``task=classification`` does (same splits, same errors); needs scikit-learn
(``pip install -e ".[dev]"``). Every classification run's report.md shows the same baseline beside
the model.
"""

import argparse
import json

from attnapps_tasks.classification.baseline import features, fit
from attnapps_tasks.classification.data import load_examples


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default="", help="data directory (default: the embedded data)")
    p.add_argument("--format", default="tsv")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--features", default="auto", choices=["auto", "word", "char"])
    p.add_argument("--C", type=float, default=None,
                   help="inverse strength of the L2 penalty (default: chosen on valid, as the report's)")
    args = p.parse_args()
    splits, _, _ = load_examples(args.path, args.format, args.text_column, args.label_column, seed=args.seed)
    kind = features([t for t, _ in splits["train"]]) if args.features == "auto" else args.features
    base = fit(splits["train"], splits["valid"], args.seed, kind, args.C)
    if base is None:
        raise SystemExit("scikit-learn is not installed: pip install -e \".[dev]\"")
    out = {"features": kind, "C": base.C,
           "valid_accuracy_by_C": {f"{c:g}": round(a, 4) for c, a in base.valid_accuracy.items()}}
    for split in ("valid", "test"):
        result = base.score(splits[split])
        out.update({f"{split}.{k}": round(result[k], 4) for k in ("accuracy", "macro_f1")})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
