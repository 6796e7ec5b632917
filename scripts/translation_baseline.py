"""Baselines for ``task=translation`` on the task's own splits, scored like the task (sacreBLEU, chrF on
detokenized text):

* **copy**: the source sentence as the translation (what shared words and names alone score);
* **word-by-word**: IBM Model 1 (Brown et al. 1993; EM, 5 iterations, with a NULL source word) fitted
  on the training pairs; each source word is replaced by its most probable target word, in source order
  (a source word aligned mostly to NULL is dropped; unknown words are copied). Words are those of
  :func:`attnapps.data.scripts.split_words`; a target written without spaces (Chinese, Japanese) is cut
  into sentencepiece pieces fitted on the training targets instead of single characters, so that a
  source word can become a whole target word.

    python scripts/translation_baseline.py [--path DIR | --embedded en-zh] [--src-lang en --tgt-lang de] [--reverse]

BLEU uses the task's tokenizer for the target language (``zh``, ``ja-mecab``, ``ko-mecab``, else ``13a``).

Prints a Markdown table of valid and test scores. Pure Python: about a minute on the embedded data.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.data import fit_tokenizer, scripts  # noqa: E402
from attnapps.metrics import bleu_tokenizer, sacrebleu_scores  # noqa: E402
from attnapps_tasks.translation.data import load_pairs, target_language  # noqa: E402

NULL = "<null>"


def words(text: str) -> list[str]:
    return scripts.split_words(text)


def detok(tokens: list[str]) -> str:
    return scripts.join_words(tokens)


def piece_words(targets: list[str]):
    """Target segmentation for scripts without spaces: sentencepiece pieces (no word-boundary marks)."""
    sp = fit_tokenizer("sentencepiece", targets, vocab_size=8000)
    return lambda text: [p.lstrip("\u2581") for p in sp.tokens(text) if p.lstrip("\u2581")]


def ibm1(pairs: list[tuple[list[str], list[str]]], iterations: int = 5) -> dict[str, dict[str, float]]:
    """``t[source word][target word]`` = P(target | source) by EM."""
    t: dict[str, dict[str, float]] = defaultdict(dict)
    targets = {f for _, tgt in pairs for f in tgt}
    uniform = 1.0 / max(1, len(targets))
    for src, tgt in pairs:
        for e in src + [NULL]:
            for f in tgt:
                t[e][f] = uniform
    for _ in range(iterations):
        count: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        total: dict[str, float] = defaultdict(float)
        for src, tgt in pairs:
            es = src + [NULL]
            for f in tgt:
                z = sum(t[e][f] for e in es)
                for e in es:
                    c = t[e][f] / z
                    count[e][f] += c
                    total[e] += c
        t = defaultdict(dict, {e: {f: c / total[e] for f, c in fs.items()} for e, fs in count.items()})
    return t


def word_by_word(src: list[str], t, null_best: dict[str, bool]) -> list[str]:
    out = []
    for e in src:
        if e not in t:
            out.append(e)  # unknown: copy (names, numbers)
        elif not null_best[e]:
            out.append(max(t[e].items(), key=lambda kv: kv[1])[0])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="")
    ap.add_argument("--embedded", default="en-de", help="with no --path: en-de or en-zh")
    ap.add_argument("--src-lang", default="")
    ap.add_argument("--tgt-lang", default="")
    ap.add_argument("--reverse", action="store_true")
    ap.add_argument("--seed", type=int, default=1234, help="the run's seed (carves valid when missing)")
    args = ap.parse_args(argv)
    splits, _ = load_pairs(args.path, args.src_lang, args.tgt_lang, seed=args.seed, reverse=args.reverse,
                           embedded=args.embedded)
    targets = [g for _, g in splits["train"]]
    lang, _ = target_language(args.path, args.embedded, args.src_lang, args.tgt_lang, args.reverse, targets)
    tokenize = bleu_tokenizer(lang)
    target_words = piece_words(targets) if scripts.profile(targets).unspaced >= 0.1 else words
    train = [(words(s), target_words(g)) for s, g in splits["train"]]
    t = ibm1(train)
    # Does a source word's target mass go mostly to words that NULL explains better? Drop it if its
    # best target is more probable from NULL than from the word itself (articles, particles).
    null_best = {e: (max(fs.values()) < t[NULL].get(max(fs, key=fs.get), 0.0)) for e, fs in t.items() if e != NULL}
    print(f"target language {lang or 'unknown'}, BLEU tokenizer {tokenize}")
    print("| baseline | valid sacreBLEU | valid chrF | test sacreBLEU | test chrF |\n|---|---|---|---|---|")
    for name, translate in (("copy the source", lambda s: s),
                            ("word-by-word, IBM Model 1", lambda s: detok(word_by_word(words(s), t, null_best)))):
        cells = []
        for split in ("valid", "test"):
            hyps = [translate(s) for s, _ in splits[split]]
            scores = sacrebleu_scores(hyps, [g for _, g in splits[split]], tokenize)
            cells += [f"{scores['bleu']:.1f}", f"{scores['chrf']:.1f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
