"""Checkpoint averaging on the translation default, at the same training budget, on valid.

    python scripts/checkpoint_averaging.py [--seeds 1234,0,1] [--last 2,3,4,5] [--out runs/averaging]

Trains the default once per seed with ``trainer.keep_last=5 trainer.average_last=3`` (a run already in
``--out`` is reused), then evaluates on valid, as training selects (the model's greedy BLEU and chrF on
``decode.valid_subset`` sentences), the model kept before averaging -- the best evaluation -- and the
average of the last N kept evaluations' weights for each N of ``--last``
(:func:`attnapps.training.average.average_last`). Averaging costs no training time: the same runs give
both. Prints each seed and the mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.average import valid_metrics  # noqa: E402
from attnapps.training.average import average_last, kept, kept_path  # noqa: E402
from attnapps.training.checkpoint import load_checkpoint  # noqa: E402


def best_before_average(run: Path) -> tuple[dict, Path]:
    """The best evaluation's weights: ``best.pt``, or, where the average replaced it
    (``train.average_kept``), the kept weights of the best evaluation (``train.best_step``)."""
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    path = run / "checkpoints" / "best.pt"
    if metrics.get("train.average_kept"):
        path = kept_path(run / "checkpoints", int(metrics["train.best_step"]))
    return load_checkpoint(path), path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1234,0,1")
    ap.add_argument("--last", default="2,3,4,5")
    ap.add_argument("--out", default="runs/averaging")
    ap.add_argument("--extra", nargs="*", default=[], help="more key=value for the runs (e.g. trainer.max_steps=)")
    args = ap.parse_args(argv)
    seeds, lasts = [int(s) for s in args.seeds.split(",")], [int(n) for n in args.last.split(",")]
    out = Path(args.out)
    rows: dict[str, list[tuple[float, float]]] = {}
    print(f"{'seed':>5}  {'model':<26} {'valid BLEU':>10} {'valid chrF':>10}")
    for seed in seeds:
        run = out / f"seed{seed}"
        if not (run / "metrics.json").is_file():
            subprocess.run([sys.executable, "-m", "attnapps.run", "task=translation", f"seed={seed}",
                            f"trainer.keep_last={max(lasts)}", "trainer.average_last=3", "trainer.progress=false",
                            f"hydra.run.dir={run}", *args.extra], check=True)
        state, where = best_before_average(run)
        candidates = [(f"best (update {state.get('step')})", state, where)]
        for n in lasts:
            if len(kept(run / "checkpoints")) >= n:
                avg = average_last(run / "checkpoints", n)
                candidates.append((f"average of last {n} ({avg['averaged_steps'][0]}-)", avg, run))
        for name, saved, path in candidates:
            m = valid_metrics(saved, path)
            key = name.split(" (")[0]
            rows.setdefault(key, []).append((m["bleu"], m["chrf"]))
            print(f"{seed:>5}  {name:<26} {m['bleu']:>10.2f} {m['chrf']:>10.2f}")
    print(f"\nmean ± sd over {len(seeds)} seeds (valid, greedy, decode.valid_subset sentences):\n")
    print("| model | valid BLEU | valid chrF | Δ BLEU vs best |\n|---|---:|---:|---:|")
    base = [b for b, _ in rows["best"]]
    for key, vals in rows.items():
        bleu, chrf = [v[0] for v in vals], [v[1] for v in vals]
        sd = (lambda x: statistics.stdev(x) if len(x) > 1 else 0.0)
        delta = [b - a for a, b in zip(base, bleu)]
        print(f"| {key} | {statistics.mean(bleu):.2f} ± {sd(bleu):.2f} | {statistics.mean(chrf):.2f} ± {sd(chrf):.2f} "
              f"| {statistics.mean(delta):+.2f} ± {sd(delta):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
