"""Decode a trained translation run's valid split with several beam sizes, length penalties, lexicon
weights and noisy-channel weights -- how ``decode.alpha``, ``decode.lexicon_weight`` and
``decode.channel`` (and ``decode.beam``) were chosen, on valid, without retraining.

    python scripts/translation_decoding.py --run RUN_DIR [--settings 5:0.6,5:2.0:1.5:0.5] [--split valid]

A setting is ``beam:alpha[:lexicon_weight[:channel]]`` (missing = the run's own ``decode`` values).
Prints a Markdown table: the setting, sacreBLEU, chrF and the length ratio (hypothesis words /
reference words); the split is read from the run's own data (``data.path`` or the embedded set, as the
run saw it). A run trained without the channel's reverse lexicon gets one fitted on its training pairs.
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
    ap.add_argument("--settings", default="5:0.6,5:1.0,5:1.5,5:2.0,5:2.5,5:3.0",
                    help="beam:alpha[:lexicon_weight[:channel]],...")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    args = ap.parse_args(argv)
    task, model = load_run(args.run, "translation")
    task.load_data()  # the run's splits, encoded with its own tokenizer (restored, not refitted)
    if task.state.channel is None:  # trained before decode.channel, or with it off: fitted as the run would
        task.state.channel = task.fit_channel(list(zip(task.sources["train"], task.refs["train"])))
    sources = [s or [task.src_tok.unk_id] for s, _ in task.datasets[args.split]]
    refs = task.refs[args.split]
    print("| beam | alpha | lexicon weight | channel | sacreBLEU | chrF | length ratio |\n|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        parts = setting.split(":")
        options = task.cfg.decode.copy()
        options.beam, options.alpha = int(parts[0]), float(parts[1])
        options.lexicon_weight = float(parts[2]) if len(parts) > 2 else options.lexicon_weight
        options.channel = float(parts[3]) if len(parts) > 3 else options.channel
        hyps = task.translate(model, sources, options.beam, options.alpha, attention=False, options=options)
        texts = [task.tgt_tok.decode(h) for h in hyps.tokens]
        scores = sacrebleu_scores(texts, refs, task.bleu_tokenize)
        ratio = sum(len(t.split()) for t in texts) / max(1, sum(len(r.split()) for r in refs))
        print(f"| {options.beam} | {options.alpha:g} | {options.lexicon_weight:g} | {options.channel:g} | "
              f"{scores['bleu']:.2f} | {scores['chrf']:.2f} | {ratio:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
