"""Re-measure the README's "how the default was chosen" tables, on the **valid** split.

Each table is a list of named settings of one task run at an equal time budget (one run at a time:
two at once on a small machine slow each other). The table printed holds valid figures only -- the
figures the choice was made on; test figures belong to the final default alone (its seed spread:
``--seeds``, e.g. ``--table generation_default --seeds 1234,0,1``). Finished runs are kept and skipped,
so an interrupted study continues where it stopped. ``--table`` takes several tables, comma-separated.

    python scripts/decision_tables.py --table generation            # 4 settings x 3 min
    python scripts/decision_tables.py --table generation_gpt --seeds 1234,0,1   # the GPT at 6 min
    python scripts/decision_tables.py --table captioning_synthetic  # 5 settings x 3 min
    python scripts/decision_tables.py --table translation_default --seeds 1234,0,1   # headline, with test
    python scripts/decision_tables.py --table translation_small_data decode.alpha=0.6 decode.beam=5 \
        decode.lexicon_weight=1 decode.channel=0                       # small-data options, decoded as then
    python scripts/decision_tables.py --table translation_training      # training-side settings, 4 x 6 min
    python scripts/decision_tables.py --table translation_input_feed --seeds 1234,0,1   # input feeding or not
    python scripts/decision_tables.py --table generation_precision --seeds 1234,0,1     # fp32 or bf16, LSTM LM
    python scripts/decision_tables.py --table generation_gpt_precision --seeds 1234,0,1 # fp32 or bf16, GPT
    python scripts/decision_tables.py --table generation_dropout --seeds 1234,0,1 --test  # torch's or ours
    python scripts/decision_tables.py --table translation_dropout,classification_dropout,captioning_dropout,\
generation_dropout --seeds 0,1,2 --test --out runs/dropout40 trainer.max_steps=40  # the four defaults, 40 steps
    python scripts/decision_tables.py --table translation_loop --seeds 0,1,2 --test --out runs/loop40 \
        trainer.max_steps=40                                  # the written-out decoder loop or autograd's, 40 steps
    python scripts/decision_tables.py --table translation_loop --seeds 1234,0,1 --test  # the same at equal time
    python scripts/decision_tables.py --table translation_precision --seeds 1234,0,1 --test  # fp32 or bf16-output
    python scripts/decision_tables.py --table translation_precision --seeds 0,1,2 --test --out runs/precision40 \
        trainer.max_steps=40                                  # the same at 40 steps
    python scripts/build_generation_check.py; python scripts/decision_tables.py --table generation_precision \
        --seeds 1234,0,1 --test --out runs/decisions-fortunes 'data.path="~/.cache/attnapps/generation-check/fortunes"'
    python scripts/build_language_sets.py; python scripts/decision_tables.py --table translation_languages --test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from attnapps.data.files import cache_root  # noqa: E402

LANGUAGES = cache_root() / "languages" / "translation"  # scripts/build_language_sets.py writes them here

TABLES = {
    "generation": {
        "task": "generation", "budget": ["trainer.max_minutes=3"], "metrics": ["bpc", "perplexity"],
        "speed": "train.tokens_per_sec",
        "settings": {
            "GPT 192 wide, dropout 0.1, lr 2e-3 (first default)": ["model.arch=transformer", "model.d_model=192",
                                                                   "model.dropout=0.1", "trainer.lr=2e-3"],
            "GPT 192 wide, dropout 0, lr 3e-3": ["model.arch=transformer", "model.d_model=192"],
            "GPT 128 wide, dropout 0, lr 3e-3 (the default then)": ["model.arch=transformer"],
            "model.arch=lstm_attention (LSTM 192 + general self-attention, dropout 0.1)": [
                "model.arch=lstm_attention", "model.d_model=192", "model.dropout=0.1"],
        }},
    "captioning_synthetic": {
        "task": "captioning", "budget": ["trainer.max_minutes=3", "decode.strategy=greedy"],
        "metrics": ["bleu4", "cider", "grounding", "grounding_chance"], "speed": "train.captions_per_sec",
        "settings": {
            "paper setting: h0 from the mean region, lambda = 1": ["model.init_from_mean=true",
                                                                  "model.doubly_stochastic=1"],
            "h0 = 0, lambda = 1": ["model.doubly_stochastic=1"],
            "h0 = 0, lambda = 0.1": ["model.doubly_stochastic=0.1"],
            "h0 from the mean region, lambda = 0": ["model.init_from_mean=true"],
            "h0 = 0, lambda = 0 (default)": [],
            "model.arch=transformer (2 layers, d_model 256)": ["model.arch=transformer"],
        }},
    "translation_default": {"task": "translation", "budget": [], "metrics": ["bleu", "chrf"],
                            "speed": "train.tokens_per_sec", "settings": {"default": []}},
    "translation_arch": {"task": "translation", "budget": [], "metrics": ["bleu", "chrf"],
                         "speed": "train.tokens_per_sec",
                         "settings": {  # the default's row: translation_default, seed 1234
                                      "transformer (3+3 layers, d 256, lr 1e-3, dropout 0.1)": [
                                          "model.arch=transformer", "model.layers=3", "trainer.lr=1e-3",
                                          "model.dropout=0.1"]}},
    "translation_small_data": {  # what a small-data translator needs (README, "Translation"): seed 1234, with
        # decode.alpha=0.6 (the decoding of the time; alpha was chosen after, scripts/translation_decoding.py)
        "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
        "settings": {
            "the previous default (no lexicon, no copy)": ["model.lexicon=false"],
            "copy attention": ["model.lexicon=false", "model.copy=true"],
            "vocabulary 1000": ["model.lexicon=false", "tokenizer.vocab_size=1000"],
            "dropout 0.3, label smoothing 0.2": ["model.lexicon=false", "model.dropout=0.3",
                                                 "model.label_smoothing=0.2"],
            "IBM Model 1 lexicon": ["model.lexicon=true"],
            "lexicon + copy attention": ["model.lexicon=true", "model.copy=true"],
            "lexicon, vocabulary 8000": ["model.lexicon=true", "tokenizer.vocab_size=8000"],
        }},
    "translation_training": {  # training-side settings beside the lexicon default (README, "Translation"): seed
        # 1234, each decoded as the default decodes (beam 12, lexicon weight 1.25, noisy channel 0.5)
        "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
        "settings": {
            "EMA of the weights 0.999": ["trainer.ema=0.999"],
            "copy attention": ["model.copy=true"],
            "subword regularisation 0.5": ["tokenizer.sampling=0.5"],
            "batch 32": ["trainer.batch_size=32"],
            # measured before decode.hybrid (decoded as the default then: its channel alone)
            "augmentation 0.1 x 3 + byte fallback": ["augment.fragments=0.1", "augment.passthrough=0.1",
                                                     "augment.shape=0.1", "tokenizer.byte_fallback=true",
                                                     "decode.hybrid=false"],
        }},
    "translation_input_feed": {  # the RNN decoder with and without input feeding, at the default's budget
        "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
        "settings": {"input feeding (model.input_feed=true, the default)": [],
                     "no input feeding (model.input_feed=false)": ["model.input_feed=false"]}},
    "generation_gpt": {  # the GPT at the default's 6-minute budget (it was the default until re-measured)
        "task": "generation", "budget": [], "metrics": ["bpc", "perplexity"], "speed": "train.tokens_per_sec",
        "settings": {"GPT 128 wide, dropout 0 (model.arch=transformer)": ["model.arch=transformer"]}},
    "translation_languages": {  # the default on the language development sets (README, "Your language")
        "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
        "settings": {f"en -> {lang}": [f"data.path={LANGUAGES / f'en-{lang}'}"] for lang in ("zh", "ja", "ar")}},
    "generation_precision": {  # bf16 autocast for the default LSTM LM (1.73x a step, scripts/profile_step.py)
        "task": "generation", "budget": [], "metrics": ["bpc", "perplexity"], "speed": "train.tokens_per_sec",
        "settings": {"fp32 (trainer.precision=fp32)": ["trainer.precision=fp32"],
                     "bf16 autocast (trainer.precision=bf16; what the default, auto, picks on a CPU with bf16 "
                     "units)": ["trainer.precision=bf16"]}},
    "generation_gpt_precision": {  # bf16 autocast for the GPT, its attention kernel in fp32 (1.6x a step)
        "task": "generation", "budget": [], "metrics": ["bpc", "perplexity"], "speed": "train.tokens_per_sec",
        "settings": {"GPT, fp32 (model.arch=transformer trainer.precision=fp32)": [
                         "model.arch=transformer", "trainer.precision=fp32"],
                     "GPT, bf16 autocast (model.arch=transformer trainer.precision=bf16)": [
                         "model.arch=transformer", "trainer.precision=bf16"]}},
    "generation_default": {"task": "generation", "budget": [], "metrics": ["bpc", "perplexity"],
                           "speed": "train.tokens_per_sec", "settings": {"default": []}},
    "captioning_default": {"task": "captioning", "budget": [], "metrics": ["bleu4", "cider", "grounding"],
                           "speed": "train.captions_per_sec", "settings": {"default": []}},
}

DEFAULT_METRICS = {"translation": (["bleu", "chrf"], "train.tokens_per_sec"),
                   "classification": (["accuracy", "macro_f1"], "train.examples_per_sec"),
                   "captioning": (["bleu4", "cider"], "train.captions_per_sec"),
                   "generation": (["bpc", "perplexity"], "train.tokens_per_sec")}
for _task, (_metrics, _speed) in DEFAULT_METRICS.items():  # <task>_dropout: each default with torch's dropout
    TABLES[f"{_task}_dropout"] = {  # or the core's 16-bit masks (generation: 1.24x a step)
        "task": _task, "budget": [], "metrics": _metrics, "speed": _speed,
        "settings": {"torch's dropout (trainer.fast_dropout=false)": ["trainer.fast_dropout=false"],
                     "the core's dropout (default)": []}}
# the RNN translator's precision: fp32 (also with the stepped loop, the default before the written-out one), or
# its output layer in bf16 while training (the default, auto, on a CPU with bf16 units: attnapps.layers.OutputLayer)
TABLES["translation_precision"] = {
    "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
    "settings": {"the stepped loop in fp32, as before (model.fused_loop=false trainer.precision=fp32)": [
                     "model.fused_loop=false", "trainer.precision=fp32"],
                 "fp32 (trainer.precision=fp32)": ["trainer.precision=fp32"],
                 "the output layer in bf16 (trainer.precision=bf16-output; what the default, auto, picks on a "
                 "CPU with bf16 units)": ["trainer.precision=bf16-output"]}}
# the default decoder's teacher-forced loop: each step's modules under autograd, or the core's loop with its
# backward written out (attnapps.layers.input_feed)
TABLES["translation_loop"] = {
    "task": "translation", "budget": [], "metrics": ["bleu", "chrf"], "speed": "train.tokens_per_sec",
    "settings": {"autograd through each step (model.fused_loop=false)": ["model.fused_loop=false"],
                 "the core's written-out loop (default)": []}}


def run_one(task: str, overrides: list[str], seed: int, out: Path) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        cmd = [sys.executable, "-m", "attnapps.run", f"task={task}", f"seed={seed}", "trainer.progress=false",
               f"hydra.run.dir={out}", *overrides]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"  {out}: {time.time() - t0:.0f} s", file=sys.stderr)
    return json.loads(metrics.read_text())


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="one of the tables, or several comma-separated (printed one "
                    f"after another): {', '.join(sorted(TABLES))}")
    ap.add_argument("--seeds", default="1234")
    ap.add_argument("--out", default=str(ROOT / "runs" / "decisions"))
    ap.add_argument("--test", action="store_true", help="also print test figures (final defaults only)")
    ap.add_argument("--keys", default="", help="more metrics.json keys to print (comma-separated), e.g. "
                    "baseline.test.chrf,test.django.chrf")
    ap.add_argument("extra", nargs="*", help="key=value overrides for every run")
    args = ap.parse_args(argv)
    names = args.table.split(",")
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        ap.error(f"--table: unknown {', '.join(unknown)}; the tables: {', '.join(sorted(TABLES))}")
    for i, name in enumerate(names):
        if len(names) > 1:
            print(f"{chr(10) if i else ''}{name} (task={TABLES[name]['task']}):\n")
        print_table(name, args)
    return 0


def print_table(name: str, args) -> None:
    """Run (or read) every setting's seeds of table ``name`` and print its Markdown table."""
    table = TABLES[name]
    seeds = [int(s) for s in args.seeds.split(",")]
    show_test = args.test or name.endswith("_default")
    splits = ["valid", "test"] if show_test else ["valid"]
    keys = [k for k in args.keys.split(",") if k]
    header = (["setting"] + [f"{s} {m}" for s in splits for m in table["metrics"]] + keys
              + ["train units/s", "updates"])
    rows = []
    for setting, overrides in table["settings"].items():
        slug = "".join(c if c.isalnum() else "_" for c in setting)[:60]
        runs = [run_one(table["task"], [*table["budget"], *overrides, *args.extra], seed,
                        Path(args.out) / name / slug / f"seed{seed}") for seed in seeds]
        cells = [fmt([r[f"{s}.{m}"] for r in runs]) for s in splits for m in table["metrics"]]
        cells += [fmt([r[k] for r in runs]) if all(k in r for r in runs) else "—" for k in keys]
        speed = statistics.mean(r[table["speed"]] for r in runs)
        rows.append([setting, *cells, f"{speed:,.0f}", fmt([r["train.steps"] for r in runs])])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n({len(seeds)} seed(s): {args.seeds}; mean ± sd over seeds)")


if __name__ == "__main__":
    sys.exit(main())
