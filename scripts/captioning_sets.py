"""The captioning default against nearest-neighbour retrieval on real small image sets, over seeds.

For each image set, each configuration ("default", or "no_memory" = ``model.retrieval_k=0``, or any
``key=value[+key=value]`` string) and each seed it runs ``python -m attnapps.run task=captioning`` with
the same time budget, one run at a time (two at once on a small machine slow each other), and prints
a Markdown table of mean +- sd (over the seeds) of CIDEr-D and BLEU-4 on **valid** (where settings are
chosen) and **test**, beside the k-NN consensus and 1-NN baselines every run's report computes
(``baseline.json``; the baseline does not depend on the seed). Finished runs are kept and skipped, so an
interrupted study continues where it stopped.

    python scripts/build_captioning_sets.py                   # twemoji, openclipart, object-names (once)
    python scripts/captioning_sets.py [--sets twemoji,openclipart,object-names] [--configs default,no_memory]
        [--seeds 1234,0,1] [--minutes 5] [--out runs/captioning-sets] [key=value ...]

Sets are read from ``--set-dir`` (default ``$ATTNAPPS_CACHE/captioning/sets``, where the build script
writes them); ``synthetic`` is the default data (its own encoder, ``small_cnn``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnapps.data.files import cache_root  # noqa: E402

CONFIGS = {"default": [], "no_memory": ["model.retrieval_k=0"]}


def run_one(data: list[str], config: str, seed: int, minutes: float, out: Path, extra: list[str]) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        overrides = CONFIGS.get(config, config.split("+") if config not in CONFIGS else [])
        cmd = [sys.executable, "-m", "attnapps.run", "task=captioning", f"seed={seed}",
               f"trainer.max_minutes={minutes}", "trainer.progress=false", f"hydra.run.dir={out}",
               *data, *overrides, *extra]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"  {out}: {time.time() - t0:.0f} s", file=sys.stderr)
    return {**json.loads(metrics.read_text()), "baseline": json.loads((out / "baseline.json").read_text()),
            "report": (out / "report.md").read_text()}


def stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def describe(run: dict) -> tuple[str, str]:
    """``(images train/valid/test, vocabulary)`` from a run's report."""
    for line in run["report"].splitlines():
        if line.startswith("- data:"):
            images = line.split("images train ")[1].split(";")[0].replace(", valid ", " / ").replace(", test ", " / ")
            vocab = line.split("vocabulary ")[1].split(" ")[0]
            return images, vocab
    return "?", "?"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="twemoji,openclipart,object-names")
    p.add_argument("--configs", default="default,no_memory")
    p.add_argument("--seeds", default="1234,0,1")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--encoder", default="efficientnet_lite0", help="for every set but synthetic")
    p.add_argument("--set-dir", type=Path, default=cache_root() / "captioning" / "sets")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "captioning-sets")
    p.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = ["| set | images train / valid / test | vocabulary | captioner | valid CIDEr-D | test CIDEr-D "
            "| test BLEU-4 | strategy chosen on valid | budget used |", "|---|---|---|---|---|---|---|---|---|"]
    for name in args.sets.split(","):
        data = [] if name == "synthetic" else [f"data.path={args.set_dir / name}", f"encoder={args.encoder}"]
        base = None
        for config in args.configs.split(","):
            runs = [run_one(data, config, seed, args.minutes, args.out / name / config / f"seed{seed}", args.extra)
                    for seed in seeds]
            images, vocab = describe(runs[0])
            base = base or runs[0]["baseline"]
            strategies = [r["report"].split("test decoding: ")[1].split(" ")[0] for r in runs]
            label = "**default**" if config == "default" else config
            rows.append(f"| {name} | {images} | {vocab} | {label} | {stats([r['valid.cider'] for r in runs])} | "
                        f"{stats([r['test.cider'] for r in runs])} | {stats([r['test.bleu4'] for r in runs])} | "
                        f"{', '.join(strategies)} | "
                        + " / ".join(f"{r.get('train.budget_used', 0):.0%}" + (
                            f" (average of {r['train.averaged_weights']} kept)" if r.get("train.averaged_weights")
                            else "") for r in runs) + " |")
        rows.append(f"| {name} | {images} | {vocab} | k-NN consensus (k={base['k']}) | {base.get('valid.cider', 0):.3f} | "
                    f"{base['test.cider']:.3f} | {base['test.bleu4']:.3f} | | |")
        rows.append(f"| {name} | {images} | {vocab} | 1-NN | | {base['nn1.test.cider']:.3f} | "
                    f"{base['nn1.test.bleu4']:.3f} | | |")
    print("\n".join(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
