"""Valid accuracy of linear text classifiers over word 1-2-grams on the embedded Rotten Tomatoes snippets:
how far the TF-IDF companion the default votes with (``tasks/classification/tfidf.py``) is from the
scikit-learn baseline, and which difference between them matters.

Every row is TF-IDF (sublinear tf, unit rows) + L2 logistic regression, ``C`` from the baseline's grid
chosen on valid, fitted on train and scored on **valid** only (this is a study of settings; nothing here
looks at test). The rows differ in what the n-grams are made of:

* ``baseline``: scikit-learn's own words (``\\b\\w\\w+\\b``, every n-gram) -- the report's baseline;
* ``split``: the word tokenizer's tokens (punctuation and one-letter words included);
* ``split, words only``: the same without punctuation and one-letter words;
* ``split, rare -> <unk>``: words seen in fewer than 2 training texts as one unknown word, as the model's
  vocabulary (``tokenizer.min_freq=2``) has them;
* ``binary NB-weighted``: presence features scaled by the naive-Bayes log-count ratio (Wang & Manning
  2012, "Baselines and bigrams"; two classes only);
* ``companion``: the companion itself over the model's token ids, n-grams in at least ``min_df`` texts.

    python scripts/classification_linear_variants.py [--path DIR]

``--path``: another corpus in the task's ``{train,valid,test}.tsv`` layout instead of the embedded snippets.

scikit-learn comes with the ``dev`` extra.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attnapps.data import scripts  # noqa: E402
from attnapps_tasks.classification import tfidf  # noqa: E402
from attnapps_tasks.classification.baseline import C_GRID  # noqa: E402
from attnapps_tasks.classification.data import load_examples  # noqa: E402

SEED = 1234  # the task's default seed: the same train/valid carving as the runs


def words(text: str) -> list[str]:
    """The word tokenizer's tokens (``tokenizer.kind=word``)."""
    return scripts.split_words(scripts.normalize(text, "auto").lower())


def logreg_accuracy(x, y, xv, yv) -> tuple[float, float]:
    """(best valid accuracy, its C) over the baseline's grid (the smaller C on a tie)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    scores = {c: float((LogisticRegression(C=c, max_iter=3000).fit(x, y).predict(xv) == np.asarray(yv)).mean())
              for c in C_GRID}
    c = max(C_GRID, key=lambda c: (scores[c], -c))
    return scores[c], c


def main(argv=None):
    import argparse

    import numpy as np
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="", help="a {train,valid,test}.tsv folder (default: the embedded snippets)")
    args = ap.parse_args(argv)
    splits = load_examples(args.path, "tsv", seed=SEED, embedded="en")[0]
    train, valid = splits["train"], splits["valid"]
    texts, y = [t for t, _ in train], [label for _, label in train]
    vtexts, yv = [t for t, _ in valid], [label for _, label in valid]
    df = Counter(w for t in texts for w in set(words(t)))
    word = re.compile(r"\w\w")
    tokenizers = {
        "baseline": None,
        "split": words,
        "split, words only": lambda t: [w for w in words(t) if word.match(w)],
        "split, rare -> <unk>": lambda t: [w if df[w] >= 2 else "<unk>" for w in words(t)],
    }
    rows = []
    for name, tokenize in tokenizers.items():
        kw = {} if tokenize is None else {"tokenizer": tokenize, "token_pattern": None, "lowercase": False}
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, **kw)
        x = vec.fit_transform(texts)
        rows.append((name, x.shape[1], *logreg_accuracy(x, y, vec.transform(vtexts), yv)))
    if len(set(y)) == 2:
        vec = CountVectorizer(ngram_range=(1, 2), binary=True)
        x, xv = vec.fit_transform(texts).astype(float), vec.transform(vtexts).astype(float)
        pos = np.asarray(y) == sorted(set(y))[1]
        p, q = 1 + np.asarray(x[pos].sum(0)).ravel(), 1 + np.asarray(x[~pos].sum(0)).ravel()
        r = sparse.diags(np.log(p / p.sum()) - np.log(q / q.sum()))
        rows.append(("binary NB-weighted", x.shape[1], *logreg_accuracy(x @ r, y, xv @ r, yv)))

    # the companion over the model's own token ids (the word tokenizer with its <unk>, as a run builds it)
    from omegaconf import OmegaConf

    from attnapps_tasks.classification.config import ClassificationConfig
    from attnapps_tasks.classification.task import ClassificationTask

    keys = [f"seed={SEED}"] + ([f"data.path={args.path}"] if args.path else [])
    cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), OmegaConf.from_dotlist(keys))
    task = ClassificationTask(cfg)
    data = task.build_data()
    for min_df in (2, 1):
        fitted = tfidf.fit(data["train"], data["valid"], len(task.labels), 2, 0.0, min_df=min_df)
        best = fitted["valid_accuracy"][f"{fitted['C']:g}"]
        rows.append((f"companion, min_df={min_df}", len(fitted["keys"]), best, fitted["C"]))

    se = (0.78 * 0.22 / len(valid)) ** 0.5
    print(f"{args.path or 'Rotten Tomatoes snippets'}, valid accuracy ({len(train)} train / {len(valid)} valid; one binomial "
          f"standard error at 0.78: {se:.3f})\n")
    print("| features | n-grams | valid accuracy | C |\n|---|---|---|---|")
    for name, n, acc, c in rows:
        print(f"| {name} | {n:,} | {acc:.4f} | {c:g} |")


if __name__ == "__main__":
    main()
