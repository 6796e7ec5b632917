"""Tune ``decode.hybrid`` on a trained translation run's valid split, without retraining, and print the
model alone (its own ``decode``, hybrid off), the hybrid, and the word-by-word baseline side by side --
how ``decode.hybrid=true`` was chosen (on valid), and the same for a run trained before it existed.

    python scripts/translation_hybrid.py --run RUN_DIR [--split valid|test] [--extra-test DIR[,DIR]]

``--split test`` (and ``--extra-test``: further test sets, as ``data.extra_test``) is for final choices
only: the weights are always chosen on valid. Prints a Markdown table: system, sacreBLEU, chrF, and
the share of sentences whose answer is the word-by-word translation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.metrics import sacrebleu_scores  # noqa: E402
from attnapps.predict import load_run  # noqa: E402
from attnapps_tasks.translation.hybrid import FEATURES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished task=translation run directory")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    ap.add_argument("--extra-test", default="", help="further test sets (folders or .tsv files), comma-separated")
    args = ap.parse_args(argv)
    task, model = load_run(args.run, "translation")
    task.cfg.data.extra_test = args.extra_test
    task.load_data()  # the run's splits, encoded with its own tokenizer (restored, not refitted)
    if task.state.channel is None:  # trained before the channel lexicon: fitted as the run would
        task.state.channel = task.fit_channel(list(zip(task.sources["train"], task.refs["train"])))
    dec = task.cfg.decode
    dec.hybrid = True
    task.state.hybrid = None
    task.evaluate(model, "valid", final=True)  # chooses the weights on valid
    base = task.word_by_word()
    sets = {args.split: (task.sources[args.split], task.refs[args.split])}
    sets.update({name: ([s for s, _ in pairs], [g for _, g in pairs]) for name, pairs in (task.extra_tests or {}).items()})
    weights = ", ".join(f"{w:g}" for w in task.state.hybrid["weights"])
    print(f"hybrid weights chosen on valid ({', '.join(FEATURES)}): {weights}")
    print("| test set | system | sacreBLEU | chrF | word-by-word share |\n|---|---|---|---|---|")
    for name, (sources, refs) in sets.items():
        ids = [task.src_tok.encode(s) for s in sources]
        wbw = [base["translate"](s) for s in sources]
        for system, hybrid_on in (("model alone", False), ("hybrid", True)):
            options = dec.copy()
            options.hybrid = hybrid_on
            hyps = task.translate(model, ids, dec.beam, dec.alpha, attention=False, options=options, texts=sources)
            texts = [task.tgt_tok.decode(h) for h in hyps.tokens]
            share = task.word_by_word_share(hyps.tokens, sources)
            s = sacrebleu_scores(texts, refs, task.bleu_tokenize)
            print(f"| {name} | {system} | {s['bleu']:.2f} | {s['chrf']:.2f} | {share:.0%} |", flush=True)
        s = sacrebleu_scores(wbw, refs, task.bleu_tokenize)
        print(f"| {name} | word by word (IBM Model 1) | {s['bleu']:.2f} | {s['chrf']:.2f} | 100% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
