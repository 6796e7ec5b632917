"""How start-up scales with the corpus: prepare once, then every run opens the store.

For each size it writes a synthetic training set made by recombining the embedded data -- translation: two
random English-German pairs joined into one; classification: two random review snippets joined, labelled
as the first; generation: the embedded novels' paragraphs drawn at random up to the size in characters;
captioning: that many synthetic scenes (its default data's generator; ``prepare`` extracts their pixels into
the feature cache) -- so the corpus is not one example repeated (valid and test stay the embedded ones), then,
one process at a time, measures:

* ``python -m attnapps.prepare task=TASK data.path=DIR``: wall time and peak RSS while preparing;
* ``python -m attnapps.run task=TASK data.path=DIR trainer.max_steps=20`` on the cache hit: seconds from
  the run's start to its first update (``train.first_update_seconds``), training tokens (examples) per
  second and the run's peak RSS (the final evaluation kept small -- translation: greedy, no word-by-word
  hybrid, no baseline; classification: no TF-IDF baseline -- start-up is measured here, not decoding).

    python scripts/bench_scale.py [--task translation|classification|generation] [--sizes 10000,100000,1000000]
        [--out runs/bench-scale]

Prints a Markdown table. Peak RSS is the process's own (``wait4``), file-backed pages of the memory maps
included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(task: str, directory: Path, size: int, seed: int = 0) -> None:
    """``size`` training examples, each two embedded ones joined (generation: ``size`` characters of the
    embedded training text's paragraphs in random order); the embedded valid and test splits."""
    directory.mkdir(parents=True, exist_ok=True)
    embedded = ROOT / "data" / task
    if task == "captioning":  # the synthetic scenes' generator, with `size` training images
        from attnapps_tasks.captioning.synthetic import write_synthetic

        shutil.rmtree(directory)
        write_synthetic(directory, seed, (("train", size), ("val", 250), ("test", 250)))
        return
    if task == "generation":
        import gzip

        paragraphs = gzip.decompress((embedded / "train.txt.gz").read_bytes()).decode("utf-8").split("\n\n")
        rng, written = random.Random(seed), 0
        with open(directory / "train.txt", "w", encoding="utf-8") as f:
            while written < size:
                text = rng.choice(paragraphs)[: size - written - 2] + "\n\n"
                f.write(text)
                written += len(text)
        for split in ("valid", "test"):
            (directory / f"{split}.txt").write_bytes(gzip.decompress((embedded / f"{split}.txt.gz").read_bytes()))
        return
    rows = [line.split("\t") for line in (embedded / "train.tsv").read_text(encoding="utf-8").splitlines()
            if line.count("\t") == 1]
    rng = random.Random(seed)
    with open(directory / "train.tsv", "w", encoding="utf-8") as f:
        for _ in range(size):
            (a, b), (c, d) = rng.choice(rows), rng.choice(rows)
            f.write(f"{a} {c}\t{b} {d}\n" if task == "translation" else f"{a} {c}\t{b}\n")
    for split in ("valid", "test"):
        shutil.copy(embedded / f"{split}.tsv", directory / f"{split}.tsv")


RUN_KEYS = {  # the final evaluation kept small: start-up is what is measured
    "translation": ["decode.beam=1", "decode.hybrid=false", "decode.channel=0", "decode.valid_subset=50",
                    "report.baseline=false", "report.examples=0"],
    "classification": ["report.baseline=false"],
    "generation": ["sample.max_new_tokens=20", "explorer.examples=0", "diag.examples=0"],
    "captioning": ["decode.strategy=greedy", "decode.valid_subset=50", "explorer.examples=0", "diag.examples=0",
                   "report.figures=0"],
}
UNIT = {"translation": "tokens", "classification": "examples", "generation": "tokens", "captioning": "captions"}
SIZE_UNIT = {"translation": "pairs", "classification": "documents", "generation": "characters", "captioning": "images"}


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command, via wait4 on the child."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.chdir(ROOT)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="translation", choices=sorted(RUN_KEYS))
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--out", default="runs/bench-scale")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    out = (ROOT / args.out).resolve()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        tag = f"{args.task}-{size}" if args.task != "translation" else str(size)
        data, cache, run = out / f"data-{tag}", out / f"cache-{tag}", out / f"run-{tag}"
        shutil.rmtree(cache, ignore_errors=True), shutil.rmtree(run, ignore_errors=True)
        write_corpus(args.task, data, size)
        keys = [f"task={args.task}", f"data.path={data}", f"data.cache_dir={cache}"]
        prep_s, prep_mb = run_measured([sys.executable, "-m", "attnapps.prepare", *keys])
        run_s, run_mb = run_measured([sys.executable, "-m", "attnapps.run", *keys, f"trainer.max_steps={args.steps}",
                                      "trainer.progress=false", *RUN_KEYS[args.task], f"hydra.run.dir={run}"])
        m = json.loads((run / "metrics.json").read_text())
        assert m["data.cache_hit"] == 1, "the run after prepare must find the store"
        rows.append((size, prep_s, prep_mb, m["train.first_update_seconds"], m[f"train.{UNIT[args.task]}_per_sec"],
                     run_mb, run_s))
        print(f"{size}: prepare {prep_s:.1f} s {prep_mb:.0f} MB; run first update {rows[-1][3]:.1f} s, "
              f"{run_mb:.0f} MB", file=sys.stderr)
    print(f"| {args.task} training {SIZE_UNIT[args.task]} | prepare (s) | peak RSS preparing (MB) | first update on a hit (s) | "
          f"train {UNIT[args.task]}/s | peak RSS of the run (MB) | run, command to exit (s) |")
    print("|---|---|---|---|---|---|---|")
    for size, ps, pm, fu, tps, rm, rs in rows:
        print(f"| {size:,} | {ps:.1f} | {pm:.0f} | {fu:.1f} | {tps:,.0f} | {rm:.0f} | {rs:.1f} |")


if __name__ == "__main__":
    main()
