"""The classification default against TF-IDF + logistic regression on several corpora, over seeds.

For each corpus and each configuration ("default" = no model override, or ``model.arch=NAME``) and
each seed it runs ``python -m attnapps.run task=classification`` with the same time budget, one run
at a time (two at once on a small machine slow each other), then prints a Markdown table of mean +- sd
(over the seeds) of accuracy and macro-F1 on **valid** (where settings are chosen) and on **test**, with
the baseline fitted on train and scored on the same splits. Finished runs are kept and skipped, so an interrupted
study continues where it stopped.

    python scripts/build_classification_corpora.py            # news, healthtweets (once)
    python scripts/build_language_sets.py                      # apps-zh, apps-ja, apps-ar, langid (once)
    python scripts/classification_corpora.py [--corpora rt,news,healthtweets]
        [--configs default,ngram_attention,han,bilstm_attention] [--seeds 1234,0,1] [--minutes 3]
        [--out runs/classification-corpora]

``rt`` is the embedded Rotten Tomatoes data and ``zh`` the embedded Chinese set (``data.embedded=zh``);
``news`` and ``healthtweets`` are read from ``--corpus-dir`` (default
``$ATTNAPPS_CACHE/classification/corpora``), ``apps-zh``, ``apps-ja``, ``apps-ar`` and ``langid`` from
``--language-dir`` (default ``$ATTNAPPS_CACHE/languages/classification``), where the build scripts write
them. The baseline row is TF-IDF + logistic regression over word 1-2-grams, or character 1-5-grams for
text written without spaces (``tasks/classification/baseline.py``).
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
from attnapps_tasks.classification.baseline import features, fit  # noqa: E402
from attnapps_tasks.classification.data import load_examples  # noqa: E402


LANGUAGE_SETS = ("apps-zh", "apps-ja", "apps-ar", "langid")


def corpus_args(name: str, corpus_dir: Path, language_dir: Path) -> tuple[str, str, str]:
    """(data.path, data.format, data.embedded) of a corpus name."""
    if name in ("rt", "zh"):
        return "", "tsv", {"rt": "en", "zh": "zh"}[name]
    if name in LANGUAGE_SETS:
        return str(language_dir / name), "tsv", "en"
    return str(corpus_dir / name), "csv", "en"


def run_one(path: str, fmt: str, embedded: str, config: str, seed: int, minutes: float, out: Path,
            extra: list[str]) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        cmd = [sys.executable, "-m", "attnapps.run", "task=classification", f"seed={seed}",
               f"trainer.max_minutes={minutes}", "trainer.progress=false", "report.baseline=false",
               f"hydra.run.dir={out}", *extra]
        if path:
            cmd += [f"data.path={path}", f"data.format={fmt}"]
        elif embedded != "en":
            cmd.append(f"data.embedded={embedded}")
        if config != "default":
            cmd.append(f"model.arch={config}")
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"  {out.relative_to(out.parents[2])}: {time.time() - t0:.0f} s", file=sys.stderr)
    m = json.loads(metrics.read_text())
    cfg = (out / "checkpoints" / "best.pt")
    arch = ""
    if cfg.is_file():
        import torch

        arch = torch.load(cfg, map_location="cpu", weights_only=True)["config"]["model"]["arch"]
    return {**m, "arch": arch}


def stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default="rt,news,healthtweets")
    p.add_argument("--configs", default="default")
    p.add_argument("--seeds", default="1234,0,1")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--corpus-dir", type=Path, default=cache_root() / "classification" / "corpora")
    p.add_argument("--language-dir", type=Path, default=cache_root() / "languages" / "classification")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "classification-corpora")
    p.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = ["| corpus | train / valid / test | mean words (space-separated) / characters | classes | model "
            "| valid accuracy | valid macro-F1 "
            "| test accuracy | test macro-F1 |", "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for corpus in args.corpora.split(","):
        path, fmt, embedded = corpus_args(corpus, args.corpus_dir, args.language_dir)
        splits, labels, _ = load_examples(path, fmt, seed=1234, embedded=embedded)
        sizes = " / ".join(f"{len(splits[s]):,}" for s in ("train", "valid", "test"))
        words = statistics.mean(len(t.split()) for t, _ in splits["train"])
        chars = statistics.mean(len(t) for t, _ in splits["train"])
        info = f"| {corpus} | {sizes} | {words:.0f} / {chars:.0f} | {len(labels)} |"
        cache = args.out / corpus / "baseline.json"
        if cache.is_file():
            base = json.loads(cache.read_text())
        else:
            kind = features([t for t, _ in splits["train"]])
            fitted = fit(splits["train"], splits["valid"], 1234, kind)  # C chosen on valid
            base = {s: fitted.score(splits[s]) for s in ("valid", "test")}
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(base))
        for config in args.configs.split(","):
            runs = [run_one(path, fmt, embedded, config, seed, args.minutes,
                            args.out / corpus / config / f"seed{seed}", args.extra) for seed in seeds]
            archs = sorted({r["arch"] for r in runs})
            name = config if config != "default" else f"**default** ({', '.join(archs)})"
            shares = [r.get("test.tfidf_share") for r in runs]
            if None not in shares:  # voting with the TF-IDF companion: its share of the vote in each run
                name += " + TF-IDF companion, share " + " / ".join(f"{x:g}" for x in shares)
            alone = [r.get("test.model_alone.accuracy") for r in runs]
            used = [r.get("train.budget_used", r["train.wall_seconds"] / (60 * args.minutes)) for r in runs]
            early = sum(int(r.get("train.stopped_early", 0)) for r in runs)
            averaged = [r for r in runs if r.get("train.averaged_weights", 0) > 0]
            before = [(r["train.valid_before_average"], r.get("valid.model_alone.macro_f1", r["valid.macro_f1"]))
                      for r in averaged]
            cells = [stats([r[f"{split}.{k}"] for r in runs]) for split in ("valid", "test")
                     for k in ("accuracy", "macro_f1")]
            rows.append(f"{info} {name} | " + " | ".join(cells) + " |")
            notes.append(f"{corpus} {config}: budget used " + " / ".join(f"{u:.0%}" for u in used)
                         + f" ({early} of {len(runs)} stopped early)"
                         + (f", the rest averaged weights; the average kept in {len(averaged)} "
                            "(valid macro-F1 of the model " + ", ".join(f"{b:.3f} -> {a:.3f}" for b, a in before) + ")"
                            if averaged else "")
                         + (f"; the model alone, test accuracy {stats(alone)}" if None not in alone else ""))
        cells = [f"{base[split][k]:.3f}" for split in ("valid", "test") for k in ("accuracy", "macro_f1")]
        rows.append(f"{info} TF-IDF ({base['test'].get('features', 'word')} n-grams) + LR | " + " | ".join(cells) + " |")
    print("\n".join(rows + [""] + notes))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
