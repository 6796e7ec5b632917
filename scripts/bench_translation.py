"""Translation speed, side by side in one run, on batches of the embedded en-de data.

* training target tokens/s of our Transformer vs a plain ``torch.nn.Transformer`` encoder-decoder of
  the same size (same embeddings, positions, tied output layer, pre-LN, AdamW) -- ratio ours/ref
* training tokens/s of the RNN model (GRU + additive attention)
* beam search sentences/s at beam 1 and 5, for untrained models and for trained runs given by --runs

    python scripts/bench_translation.py [--steps 20] [--batch 64] [--runs RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from omegaconf import OmegaConf
from torch import nn

from attnapps.data import BucketBatchSampler
from attnapps.layers import SinusoidalPositions
from attnapps_tasks.translation.task import TranslationConfig, TranslationTask


class TorchTransformer(nn.Module):
    """The reference: torch.nn.Transformer with our embedding/position/output conventions."""

    def __init__(self, vocab, d_model, heads, layers, ff, dropout):
        super().__init__()
        self.d_model = d_model
        self.emb = nn.Embedding(vocab, d_model, padding_idx=0)
        self.pos = SinusoidalPositions(d_model)
        self.core = nn.Transformer(d_model, heads, layers, layers, ff, dropout, batch_first=True, norm_first=True,
                                   activation="gelu")
        self.drop = nn.Dropout(dropout)

    def embed(self, ids):
        return self.drop(self.emb(ids) * math.sqrt(self.d_model) + self.pos(ids.size(1)))

    def forward(self, src, src_len, tgt_in):
        src_pad = src == 0
        causal = self.core.generate_square_subsequent_mask(tgt_in.size(1), device=src.device)
        x = self.core(self.embed(src), self.embed(tgt_in), tgt_mask=causal, src_key_padding_mask=src_pad,
                      memory_key_padding_mask=src_pad, tgt_is_causal=True)
        return x @ self.emb.weight.t()


def train_speed(task, model, batches, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step(b):
        loss, n = task.loss(model, b)
        (loss / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(n)
    for b in batches[:2]:
        step(b)
    tokens, t0 = 0, time.perf_counter()
    for i in range(steps):
        tokens += step(batches[2 + i % (len(batches) - 2)])
    return tokens / (time.perf_counter() - t0)


def decode_speed(task, model, sources, beam):
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        task.translate(model, sources, beam=beam, alpha=0.6)
    return len(sources) / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sentences", type=int, default=128)
    p.add_argument("--runs", nargs="*", default=[],
                   help="trained run dirs (e.g. an rnn and a transformer run) to time beam search on real outputs")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    base = OmegaConf.structured(TranslationConfig)
    task = TranslationTask(base)
    task.load_data()
    train = task.datasets["train"]
    sampler = BucketBatchSampler(len(train), args.batch, task.lengths("train"), seed=0)  # as the trainer batches
    batches = [task.collate([train[i] for i in b]) for b, _ in zip(sampler, range(args.steps + 2))]
    sources = [s for s, _ in task.datasets["test"][:args.sentences]]
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} batch={args.batch} vocab={task.src_tok.vocab_size}")

    rows = {}
    for arch in ("transformer", "rnn"):
        cfg = OmegaConf.merge(base, {"model": {"arch": arch, "layers": 3 if arch == "transformer" else 1,
                                               "dropout": 0.1}})
        task.cfg = cfg
        torch.manual_seed(0)
        model = task.build_model()
        rows[arch] = (model, train_speed(task, model, batches, args.steps))
    m = OmegaConf.merge(base, {"model": {"layers": 3}}).model
    torch.manual_seed(0)
    ref = TorchTransformer(task.tgt_tok.vocab_size, m.hidden_size, m.heads, 3, m.ff_size, 0.1)
    ref_speed = train_speed(task, ref, batches, args.steps)
    ours = rows["transformer"][1]
    n_ours = sum(p.numel() for p in rows["transformer"][0].parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    print(f"\ntraining target tokens/s (mean over {args.steps} length-bucketed batches):")
    print(f"  ours transformer ({n_ours / 1e6:.2f}M params): {ours:8.0f}")
    print(f"  nn.Transformer   ({n_ref / 1e6:.2f}M params): {ref_speed:8.0f}   ours/ref = {ours / ref_speed:.2f}x")
    print(f"  rnn (gru + additive attention):  {rows['rnn'][1]:8.0f}")
    print(f"\nbeam search sentences/s on {len(sources)} test sentences:")
    models = [(f"{arch} (untrained weights)", rows[arch][0], OmegaConf.merge(base, {"model": {"arch": arch}}))
              for arch in ("transformer", "rnn")]
    from attnapps.predict import load_run

    for run in args.runs:
        run_task, model = load_run(run)
        models.append((f"{run_task.cfg.model.arch} (trained: {run})", model, run_task.cfg))
    for name, model, cfg in models:
        task.cfg = cfg
        print(f"  {name:<48} beam 1: {decode_speed(task, model, sources, 1):7.1f}   "
              f"beam 5: {decode_speed(task, model, sources, 5):7.1f}")


if __name__ == "__main__":
    main()
