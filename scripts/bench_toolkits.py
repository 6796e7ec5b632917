"""Training speed side by side with what a practitioner would pick instead, on this machine, in one run.

* ``transformer``: our Transformer translator (``task=translation model.arch=transformer``) against
  fairseq 0.12.2's ``fairseq-train --arch transformer`` at the same sizes (pre-LN, GELU, shared
  embeddings, dropout, label smoothing, Adam(W), gradient clipping, 64 sentences a batch);
* ``rnn``: our RNN translator (bidirectional GRU encoder, GRU decoder with input feeding and additive
  attention) against OpenNMT-py 3.5.1's ``onmt_train`` (``brnn`` + ``GRU`` + ``mlp`` attention, the same);
  ``rnn-nofeed``: the same pair without input feeding on either side (``model.input_feed=false``,
  ``input_feed: 0``);
* ``gpt``: our character GPT (``task=generation model.arch=transformer``) against a plain PyTorch training
  loop written in nanoGPT's style (``scripts/toolkits/nanogpt_loop.py``) in nanoGPT's published CPU
  configuration: 4 layers, 4 heads, width 128, context 64, batch 12 -- in fp32 with its AdamW unfused on
  the CPU, as nanoGPT decides; ours at its default precision (``auto``: bf16 autocast on a CPU with bf16
  units); ``gpt-fp32``: ours in fp32 too; ``gpt-fused``: the loop with fused AdamW (what our trainer
  uses), the stronger reference.

Both sides train on the same data: the embedded en-de pairs in our task's own sentencepiece segmentation
(written out as text for the toolkits, ``--work``/data), and the embedded Austen text as characters. Ours runs
as users run it (``python -m attnapps.run``); each toolkit through its own command. The toolkits go into their
own virtualenv (``--venv``), made by this script on first use with the torch of the environment running it
(never downgraded: fairseq 0.12.2 and OpenNMT-py 3.5.1 pin older ones; see :func:`make_venv`).

The pairs run interleaved (A, B, A, B, ...; ``--repeats`` each). A run's speed is its target tokens over its
wall time between the first report after ``--warmup`` updates and its last report, read from its own log
(ours: ``log.csv``; fairseq: ``wps``/``wpb`` of each interval; OpenNMT-py: its report lines; the loop: its
own lines) -- start-up and the final evaluation are left out on both sides. This shared machine's speed
drifts by up to ±20% over minutes, so each of our runs is compared with the run of theirs right after it:
prints the median speeds, the median of those pairs' ratios (the headline), each pair's ratio, and the
target tokens a batch (to show the batches match) as a Markdown table.

    python scripts/bench_toolkits.py [--pairs transformer,rnn,rnn-nofeed,gpt,gpt-fp32,gpt-fused]
                                     [--updates 300] [--warmup 50] [--repeats 3]
                                     [--venv runs/toolkits/venv] [--work runs/toolkits]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOP = ROOT / "scripts" / "toolkits" / "nanogpt_loop.py"
FAIRSEQ, OPENNMT = "fairseq==0.12.2", "OpenNMT-py==3.5.1"
FAIRSEQ_DEPS = ["hydra-core>=1.0.7,<1.1", "omegaconf<2.1", "bitarray", "regex", "sacrebleu>=1.4.12", "cffi", "tqdm"]
ONMT_DEPS = ["configargparse", "ctranslate2>=4,<5", "tensorboard>=2.3", "flask", "waitress", "pyonmttok>=1.37,<2",
             "pyyaml", "sacrebleu", "rapidfuzz", "pyahocorasick", "fasttext-wheel", "spacy", "six"]  # (all but torch)

# the matched settings (ours: the keys; the toolkits: their flags, below)
D_MODEL, FF, HEADS, LAYERS, DROPOUT, SMOOTHING, LR, BATCH = 256, 1024, 4, 1, 0.2, 0.1, 3e-3, 64
OURS_COMMON = ["trainer.max_minutes=0", "trainer.max_epochs=0", "trainer.eval_every=0", "trainer.progress=false",
               "trainer.log_every=10", "diag.examples=0"]
OURS_TRANSLATION = ["task=translation", "model.lexicon=false", "decode.beam=1", "decode.hybrid=false",
                    "decode.channel=0", "report.baseline=false", "report.examples=0", "report.figures=0",
                    f"model.hidden_size={D_MODEL}", f"model.layers={LAYERS}", f"model.dropout={DROPOUT}",
                    f"model.label_smoothing={SMOOTHING}", f"trainer.lr={LR}", f"trainer.batch_size={BATCH}"]
GPT = dict(layers=4, heads=4, width=128, context=64, batch=12)


def run(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run ``cmd``, its output into ``log``; one clear line and the log's tail if it fails."""
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)
    text = log.read_text(errors="replace")
    if code:
        sys.exit(f"{cmd[0]} failed (exit {code}); the end of {log}:\n" + "\n".join(text.splitlines()[-15:]))
    return text


# ---------------------------------------------------------------------------------------------- the venv
def make_venv(venv: Path) -> Path:
    """The toolkits' virtualenv, made once: this environment's torch (the same version, from the same
    index), then fairseq and OpenNMT-py without their pinned dependencies, and the dependencies their
    training commands import, each under a constraint that keeps torch as it is.

    The care they need with today's Python and torch:
    * fairseq 0.12.2 has no wheel for Python 3.11: its sdist is built here. Its ``setup.py`` lists C++
      extensions whose sources the sdist lacks (BASE layers, non-autoregressive edit distances; none is
      used by ``--arch transformer``); they are left out of the build. It pins hydra-core 1.0 / omegaconf
      2.0, whose metadata pip >= 24.1 rejects: the venv gets pip < 24.1. On Python >= 3.11 its configs'
      dataclass defaults are rejected (mutable defaults); the installed ``fairseq/dataclass/configs.py`` is
      rewritten to ``default_factory`` (:func:`patch_fairseq`).
    * fairseq lists torchaudio, which pins its own torch and which text models never import: left out.
    * OpenNMT-py 3.5.1 pins torch < 2.3: installed with ``--no-deps``, then its other requirements.
    """
    import torch

    py = venv / "bin" / "python"
    if (venv / "bin" / "fairseq-train").exists() and (venv / "bin" / "onmt_train").exists():
        return py
    venv.parent.mkdir(parents=True, exist_ok=True)
    logs = venv.parent
    run([sys.executable, "-m", "venv", str(venv)], logs / "venv.log")
    pin = logs / "constraints.txt"
    pin.write_text(f"torch=={torch.__version__.split('+')[0]}\n")
    pip = [str(py), "-m", "pip", "install", "-q"]
    run(pip + ["pip<24.1"], logs / "pip.log")
    run(pip + ["-c", str(pin), "torch", "cython", "numpy", "wheel"], logs / "torch.log")
    with tempfile.TemporaryDirectory() as tmp:
        run([str(py), "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation", FAIRSEQ, "-d", tmp],
            logs / "fairseq-download.log")
        sdist = next(Path(tmp).glob("fairseq-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(p for p in Path(tmp).iterdir() if p.is_dir())
        setup = src / "setup.py"
        text = setup.read_text()
        old = "    from torch.utils import cpp_extension\n"
        if old not in text:
            sys.exit(f"{setup}: not the fairseq 0.12.2 setup.py this script knows how to build")
        setup.write_text(text.replace(old, "    raise ImportError  # (the sdist lacks these extensions' sources)\n"))
        run(pip + ["--no-build-isolation", "--no-deps", str(src)], logs / "fairseq-build.log")
    run(pip + ["-c", str(pin), *FAIRSEQ_DEPS], logs / "fairseq-deps.log")  # all but torch and torchaudio
    patch_fairseq(py)
    run(pip + ["--no-deps", OPENNMT], logs / "onmt.log")
    run(pip + ["-c", str(pin), *ONMT_DEPS], logs / "onmt-deps.log")
    version = run([str(py), "-c", "import torch, fairseq, onmt; print(torch.__version__)"], logs / "check.log")
    if version.strip().splitlines()[-1] != torch.__version__:
        sys.exit(f"{venv}: torch {version.strip()} is not this environment's {torch.__version__}")
    return py


def patch_fairseq(py: Path) -> None:
    """Python >= 3.11 rejects a dataclass field whose default is a (mutable) dataclass instance, which
    fairseq 0.12.2's configs and hydra-core 1.0's own use: in the installed packages (fairseq's examples
    aside), ``x: XConf = XConf()`` and ``field(default=XConf())`` become ``field(default_factory=XConf)``, and the one place
    that reads those defaults back (``fairseq.dataclass.initialize``) calls the factory."""
    dataclass_default = re.compile(r"^(\s+\w+: \w+) = (\w+)\(\)$", re.M)
    packages = {}
    for module in ("fairseq", "hydra"):
        where = subprocess.check_output([str(py), "-c", "import importlib.util as u; "
                                         f"print(u.find_spec('{module}').submodule_search_locations[0])"], text=True)
        package = packages[module] = Path(where.strip())
        for source in package.rglob("*.py"):
            text = source.read_text()
            if "examples" in source.relative_to(package).parts or not (
                    dataclass_default.search(text) or re.search(r"field\(default=[A-Z]\w*\(\)\)", text)):
                continue
            if not re.search(r"^from dataclasses import .*\bfield\b", text, re.M):
                sys.exit(f"{source}: a dataclass default to rewrite, but no `field` import")
            text = dataclass_default.sub(r"\1 = field(default_factory=\2)", text)
            source.write_text(re.sub(r"field\(default=([A-Z]\w*)\(\)\)", r"field(default_factory=\1)", text))
    init = packages["fairseq"] / "dataclass" / "initialize.py"
    old = "        v = FairseqConfig.__dataclass_fields__[k].default\n"
    init.write_text(init.read_text().replace(old, "        f = FairseqConfig.__dataclass_fields__[k]\n        v = "
                                             "f.default_factory() if callable(f.default_factory) else f.default\n"))


# ---------------------------------------------------------------------------------------------- the data
def translation_data(work: Path) -> Path:
    """The embedded en-de pairs in our task's sentencepiece segmentation, as space-separated pieces:
    ``work/data/{train,valid}.{src,tgt}``; the toolkits read the same tokens we train on."""
    out = work / "data"
    if (out / "train.tgt").exists():
        return out
    from omegaconf import OmegaConf

    from attnapps_tasks.translation.task import TranslationConfig, TranslationTask

    task = TranslationTask(OmegaConf.structured(TranslationConfig))
    task.load_data()
    out.mkdir(parents=True, exist_ok=True)
    piece = task.src_tok.id_to_piece
    for split in ("train", "valid"):
        with open(out / f"{split}.src", "w") as fs, open(out / f"{split}.tgt", "w") as ft:
            for s, t in task.datasets[split]:
                fs.write(" ".join(piece(i) for i in s) + "\n")
                ft.write(" ".join(piece(i) for i in t) + "\n")
    return out


# ---------------------------------------------------------------------------------------------- speeds
def window(points: list[tuple[int, float, float]], warmup: int) -> float:
    """``points``: (update, cumulative seconds, cumulative target tokens) at each report; the tokens per
    second between the first report at or after ``warmup`` updates and the last."""
    points = sorted(points)
    after = [p for p in points if p[0] >= warmup]
    if len(after) < 2:
        raise ValueError(f"fewer than two reports after update {warmup}: {points[-3:]}")
    (_, t0, n0), (_, t1, n1) = after[0], after[-1]
    return (n1 - n0) / (t1 - t0)


def ours_points(run_dir: Path, unit: str) -> list[tuple[int, float, float]]:
    """From ``log.csv`` (long format): ``train.<unit>_seen`` at each logged update, with its ``elapsed_s``."""
    with open(run_dir / "log.csv") as f:
        return [(int(r["step"]), float(r["elapsed_s"]), float(r["value"]))
                for r in csv.DictReader(f) if r["key"] == f"train.{unit}_seen"]


def fairseq_points(log: str) -> list[tuple[int, float, float]]:
    """From ``--log-format json`` train_inner lines: each interval's tokens (``wpb`` x updates) and its
    seconds (tokens / ``wps``), accumulated."""
    points, t, n, last = [], 0.0, 0.0, 0
    for line in log.splitlines():
        m = re.search(r"\{.*\"num_updates\".*\}", line)
        if not m or "train_inner" not in line:
            continue
        r = json.loads(m.group(0))
        update = int(r["num_updates"])
        tokens = float(r["wpb"]) * (update - last)
        n, t, last = n + tokens, t + tokens / float(r["wps"]), update
        points.append((update, t, n))
    return points


def onmt_points(log: str) -> list[tuple[int, float, float]]:
    """From OpenNMT-py's report lines ``Step S/ N; ...; bsz: src/ tgt/ sents; a/ b tok/s; ...``: each
    interval's target tokens (tgt per batch x updates) over its target tokens/s, accumulated."""
    points, t, n, last = [], 0.0, 0.0, 0
    for m in re.finditer(r"Step\s+(\d+)/\s*\d+;.*?bsz:\s*(\d+)/\s*(\d+)/\s*\d+;\s*(\d+)/\s*(\d+) tok/s", log):
        update, tgt_per_batch, rate = int(m.group(1)), float(m.group(3)), float(m.group(5))
        tokens = tgt_per_batch * (update - last)
        n, t, last = n + tokens, t + tokens / rate, update
        points.append((update, t, n))
    return points


def loop_points(log: str) -> list[tuple[int, float, float]]:
    return [(int(a), float(b), float(c)) for a, b, c in re.findall(r"^step (\d+) seconds ([\d.]+) tokens (\d+)",
                                                                  log, re.M)]


def per_batch(points) -> float:
    (u0, _, n0), (u1, _, n1) = points[0], points[-1]
    return (n1 - n0) / max(1, u1 - u0)


# ---------------------------------------------------------------------------------------------- the runs
class Pair:
    def __init__(self, args, py: Path | None):
        self.args, self.py, self.work = args, py, Path(args.work)

    def ours(self, i: int, keys: list[str], unit: str = "tokens"):
        out = self.work / "runs" / f"{self.name}-ours-{i}"
        shutil.rmtree(out, ignore_errors=True)
        run([sys.executable, "-m", "attnapps.run", *keys, *OURS_COMMON, f"trainer.max_steps={self.args.updates}",
             f"seed={i}", f"hydra.run.dir={out}"], self.work / f"{self.name}-ours.log")
        return ours_points(out, unit)


class Transformer(Pair):
    name, theirs = "transformer", "fairseq 0.12.2"

    def prepare(self):
        data = translation_data(self.work)
        self.bin = self.work / "fairseq-bin"
        if not (self.bin / "dict.src.txt").exists():
            run([str(self.py.parent / "fairseq-preprocess"), "--source-lang", "src", "--target-lang", "tgt",
                 "--trainpref", str(data / "train"), "--validpref", str(data / "valid"), "--destdir", str(self.bin),
                 "--joined-dictionary", "--workers", "1"], self.work / "fairseq-preprocess.log")

    def run_ours(self, i):
        return self.ours(i, OURS_TRANSLATION + ["model.arch=transformer", f"model.heads={HEADS}",
                                                f"model.ff_size={FF}"])

    def run_theirs(self, i):
        text = run([str(self.py.parent / "fairseq-train"), str(self.bin), "--cpu", "--arch", "transformer",
                    "--encoder-layers", str(LAYERS), "--decoder-layers", str(LAYERS),
                    "--encoder-embed-dim", str(D_MODEL), "--decoder-embed-dim", str(D_MODEL),
                    "--encoder-ffn-embed-dim", str(FF), "--decoder-ffn-embed-dim", str(FF),
                    "--encoder-attention-heads", str(HEADS), "--decoder-attention-heads", str(HEADS),
                    "--encoder-normalize-before", "--decoder-normalize-before", "--share-all-embeddings",
                    "--activation-fn", "gelu", "--dropout", str(DROPOUT), "--activation-dropout", str(DROPOUT),
                    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", str(SMOOTHING),
                    "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01",
                    "--lr", str(LR), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "200",
                    "--clip-norm", "1.0", "--batch-size", str(BATCH), "--required-batch-size-multiple", "1",
                    "--max-update", str(self.args.updates), "--log-format", "json", "--log-interval", "10",
                    "--no-save", "--disable-validation", "--num-workers", "0", "--seed", str(i)],
                   self.work / "fairseq-train.log")
        return fairseq_points(text)


class RNN(Pair):
    name, theirs, feed = "rnn", "OpenNMT-py 3.5.1", True

    def prepare(self):
        data = translation_data(self.work)
        self.config = self.work / f"onmt-{self.name}.yaml"
        vocab = self.work / "onmt.vocab"
        pieces = {}
        for side in ("src", "tgt"):
            for line in open(data / f"train.{side}"):
                for p in line.split():
                    pieces[p] = pieces.get(p, 0) + 1
        vocab.write_text("".join(f"{p}\t{c}\n" for p, c in sorted(pieces.items(), key=lambda x: -x[1])))
        self.config.write_text(
            f"data:\n  corpus_1:\n    path_src: {data}/train.src\n    path_tgt: {data}/train.tgt\n"
            f"  valid:\n    path_src: {data}/valid.src\n    path_tgt: {data}/valid.tgt\n"
            f"src_vocab: {vocab}\ntgt_vocab: {vocab}\nshare_vocab: true\nsave_data: {self.work}/onmt\n"
            f"save_model: {self.work}/onmt/model\nsave_checkpoint_steps: 1000000\nvalid_steps: 1000000\n"
            f"encoder_type: brnn\ndecoder_type: rnn\nrnn_type: GRU\nlayers: 1\nhidden_size: {D_MODEL}\n"
            f"word_vec_size: {D_MODEL}\nglobal_attention: mlp\ninput_feed: {int(self.feed)}\nbridge: true\n"
            f"share_embeddings: true\ndropout: [{DROPOUT}]\nlabel_smoothing: {SMOOTHING}\n"
            f"optim: adam\nlearning_rate: {LR}\nadam_beta2: 0.98\nmax_grad_norm: 1.0\nweight_decay: 0.01\n"
            f"batch_type: sents\nbatch_size: {BATCH}\nvalid_batch_size: {BATCH}\nreport_every: 10\n"
            f"num_workers: 0\nbucket_size: 32768\nmodel_dtype: fp32\n")

    def run_ours(self, i):
        return self.ours(i, OURS_TRANSLATION + ["model.arch=rnn", "model.cell=gru", "model.attention=additive",
                                                f"model.embed_size={D_MODEL}", f"model.input_feed={self.feed}"])

    def run_theirs(self, i):
        text = run([str(self.py.parent / "onmt_train"), "-config", str(self.config), "-train_steps",
                    str(self.args.updates), "-seed", str(i)], self.work / "onmt-train.log")
        return onmt_points(text)


class RNNNoFeed(RNN):
    """Both decoders without input feeding (``model.input_feed=false``, OpenNMT-py's ``input_feed: 0``): each
    runs its RNN over the whole target in one call, then attends from every step at once."""

    name, theirs, feed = "rnn-nofeed", "OpenNMT-py 3.5.1, input_feed 0", False


class CharGPT(Pair):
    """Ours as the GPT trains by default (``trainer.precision=auto``: bf16 autocast on a CPU with bf16
    units) against the loop as nanoGPT trains on a CPU (fp32: its ``train.py`` autocasts on CUDA only)."""

    name, theirs, fused, precision = "gpt", "plain PyTorch loop (nanoGPT's style)", False, None

    def prepare(self):
        from attnapps_tasks.generation.data import load_corpus

        self.text = self.work / "austen-train.txt"  # the embedded novels' training split, as ours reads it
        if not self.text.exists():
            self.text.write_text(load_corpus()[0]["train"], encoding="utf-8")

    def run_ours(self, i):
        g = GPT
        return self.ours(i, ["task=generation", "model.arch=transformer", f"model.layers={g['layers']}",
                             f"model.heads={g['heads']}", f"model.d_model={g['width']}", f"model.context={g['context']}",
                             "model.dropout=0", f"trainer.batch_size={g['batch']}", "trainer.eval_max_batches=1",
                             *([f"trainer.precision={self.precision}"] if self.precision else [])])

    def run_theirs(self, i):
        g = GPT
        text = run([sys.executable, str(LOOP), str(self.text), "--steps", str(self.args.updates), "--seed", str(i),
                    *[f"--{k}={v}" for k, v in g.items()], *(["--fused"] if self.fused else [])],
                   self.work / "loop.log")
        return loop_points(text)


class CharGPTFused(CharGPT):
    """The same loop with fused AdamW on the CPU too (nanoGPT itself fuses only on CUDA): the stronger
    reference."""

    name, theirs, fused = "gpt-fused", "the same loop, fused AdamW", True


class CharGPTFP32(CharGPT):
    """Both in fp32 (``trainer.precision=fp32``): the same arithmetic on both sides."""

    name, theirs, precision = "gpt-fp32", "plain PyTorch loop (nanoGPT's style), both fp32", "fp32"


PAIRS = {"transformer": Transformer, "rnn": RNN, "rnn-nofeed": RNNNoFeed, "gpt": CharGPT, "gpt-fp32": CharGPTFP32,
         "gpt-fused": CharGPTFused}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default="transformer,rnn,rnn-nofeed,gpt,gpt-fp32,gpt-fused")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50, help="updates left out at the start of each run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--venv", default=str(ROOT / "runs" / "toolkits" / "venv"))
    p.add_argument("--work", default=str(ROOT / "runs" / "toolkits"))
    args = p.parse_args()
    names = [n.strip() for n in args.pairs.split(",") if n.strip()]
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        sys.exit(f"--pairs: unknown {unknown}; choose from {sorted(PAIRS)}")
    if args.updates <= args.warmup + 10:
        sys.exit(f"--updates={args.updates}: must exceed --warmup ({args.warmup}) by more than one report (10)")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    py = make_venv(Path(args.venv)) if any(n in ("transformer", "rnn") for n in names) else None
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.updates} updates a run, the first "
          f"{args.warmup} left out; {args.repeats} runs each, interleaved\n")
    print("| Model | Ours (tokens/s) | Theirs (tokens/s) | Ours / theirs | Each pair's ratio | "
          "Target tokens a batch (ours / theirs) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        pair = PAIRS[name](args, py)
        pair.prepare()
        ours, theirs, batches = [], [], []
        for i in range(args.repeats):
            a, b = pair.run_ours(i + 1), pair.run_theirs(i + 1)
            ours.append(window(a, args.warmup))
            theirs.append(window(b, args.warmup))
            batches.append((per_batch(a), per_batch(b)))
        o, t = statistics.median(ours), statistics.median(theirs)
        ratios = [a / b for a, b in zip(ours, theirs)]  # each run against the one right after it
        pa, pb = statistics.median(x for x, _ in batches), statistics.median(y for _, y in batches)
        print(f"| {name} vs {pair.theirs} | {o:,.0f} | {t:,.0f} | **{statistics.median(ratios):.2f}x** | "
              f"{', '.join(f'{r:.2f}' for r in ratios)} | {pa:.0f} / {pb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
