"""Decode a trained translation run's valid split with several beam sizes and length penalties -- how
``decode.alpha`` (and ``decode.beam``) were chosen, on valid, without retraining.

    python scripts/translation_decoding.py --run RUN_DIR [--settings 5:0.6,5:1.0,5:1.5,5:2.0] [--split valid]

Prints a Markdown table: beam, alpha, sacreBLEU, chrF and the length ratio (hypothesis words /
reference words) of each setting; the split is read from the run's own data (``data.path`` or the
embedded set, as the run saw it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.metrics import sacrebleu_scores  # noqa: E402
from attnapps.predict import load_run  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished task=translation run directory")
    ap.add_argument("--settings", default="5:0.6,5:1.0,5:1.5,5:2.0,5:2.5,5:3.0", help="beam:alpha,...")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    args = ap.parse_args(argv)
    task, model = load_run(args.run, "translation")
    task.load_data()  # the run's splits, encoded with its own tokenizer (restored, not refitted)
    sources = [s or [task.src_tok.unk_id] for s, _ in task.datasets[args.split]]
    refs = task.refs[args.split]
    print("| beam | alpha | sacreBLEU | chrF | length ratio |\n|---|---|---|---|---|")
    for setting in args.settings.split(","):
        beam, alpha = int(setting.split(":")[0]), float(setting.split(":")[1])
        hyps = task.translate(model, sources, beam, alpha, attention=False)
        texts = [task.tgt_tok.decode(h) for h in hyps.tokens]
        scores = sacrebleu_scores(texts, refs, task.bleu_tokenize)
        ratio = sum(len(t.split()) for t in texts) / max(1, sum(len(r.split()) for r in refs))
        print(f"| {beam} | {alpha:g} | {scores['bleu']:.2f} | {scores['chrf']:.2f} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
