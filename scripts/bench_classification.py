"""Training throughput of the classification architectures against the same models written plainly.

For each architecture (ngram_attention, han, bilstm_attention, transformer) and document length
(50 / 200 / 800 tokens) it times full training steps (forward, backward, AdamW) of our model (with the
trainer's optimizer: its sparse lookup tables updated row by row; ``ngram_attention+dense`` is the n-gram
model with ``model.sparse=false``, every row updated, as before) and of a
plain PyTorch version of the same model (same sizes, same parameter count up to biases), interleaved
in one process, and prints examples per second and the ratio ours / plain (>= 1 means ours is not slower).

    python scripts/bench_classification.py [--lengths 50,200,800] [--batch 32] [--seconds 4] [--threads 0]

The plain versions: nn.Embedding + masked additive attention written out (ngram); the usual HAN
recipe of padded sentence grids through ``pack_padded_sequence`` / ``pad_packed_sequence`` (its grid
is built outside the timed step, ours inside); nn.LSTM through the same packing (bilstm); and
``nn.TransformerEncoder`` with mean pooling (transformer).
"""

from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attnapps.training.updater import build_optimizer  # noqa: E402
from attnapps_tasks.classification.model import (BiLSTMAttention, BiLSTMConfig, HANConfig, HierarchicalAttention,  # noqa: E402
                                                  NgramAttention, NgramConfig, TransformerConfig,
                                        TransformerClassifier, hashed_ngrams, split_sentences)

VOCAB, CLASSES, SEP = 30000, 5, 3


def additive_pool(query, keys, mask, wq, wk, v):
    """Plain masked additive attention pooling: ``(batch, hops, d)`` queries over ``(batch, len, d)``."""
    scores = v(torch.tanh(wq(query).unsqueeze(2) + wk(keys).unsqueeze(1))).squeeze(-1)  # (batch, hops, len)
    weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), -1)
    return weights @ keys, weights


class PlainNgram(nn.Module):
    def __init__(self, embed=64, buckets=2**18, hops=2):
        super().__init__()
        self.buckets = buckets
        self.uni, self.bi = nn.Embedding(VOCAB, embed, padding_idx=0), nn.Embedding(buckets, embed)
        self.wq, self.wk, self.v = nn.Linear(embed, embed, bias=False), nn.Linear(embed, embed), nn.Linear(embed, 1, bias=False)
        self.query = nn.Parameter(torch.randn(1, hops, embed))
        self.head = nn.Linear(hops * embed + embed, CLASSES)

    def forward(self, ids, lengths):
        mask = torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        e = self.uni(ids)
        grams = self.bi(hashed_ngrams(ids, 2, self.buckets)) * mask[:, 1:].unsqueeze(-1)
        e = e + nn.functional.pad(grams, (0, 0, 0, 1))
        ctx, _ = additive_pool(self.query.expand(ids.size(0), -1, -1), e, mask, self.wq, self.wk, self.v)
        m = mask.unsqueeze(-1).float()
        return self.head(torch.cat([ctx.flatten(1), (e * m).sum(1) / m.sum(1)], -1))


class PlainHAN(nn.Module):
    def __init__(self, embed=100, hidden=50):
        super().__init__()
        d = 2 * hidden
        self.emb = nn.Embedding(VOCAB, embed, padding_idx=0)
        self.word_rnn = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.sent_rnn = nn.GRU(d, hidden, batch_first=True, bidirectional=True)
        self.w = nn.ModuleList([nn.Linear(d, d, bias=False), nn.Linear(d, d), nn.Linear(d, 1, bias=False)])
        self.s = nn.ModuleList([nn.Linear(d, d, bias=False), nn.Linear(d, d), nn.Linear(d, 1, bias=False)])
        self.uw, self.us = nn.Parameter(torch.randn(1, 1, d)), nn.Parameter(torch.randn(1, 1, d))
        self.head = nn.Linear(d, CLASSES)

    @staticmethod
    def rnn(rnn, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.size(1))[0]

    def forward(self, grid):  # grid: (words (batch, sents, words), word_lengths (batch, sents), sent_counts (batch,))
        words, word_lengths, counts = grid
        b, s, n = words.shape
        real = word_lengths.flatten() > 0
        wl = word_lengths.flatten()[real]
        h = self.rnn(self.word_rnn, self.emb(words.flatten(0, 1)[real]), wl)
        mask = torch.arange(n).unsqueeze(0) < wl.unsqueeze(1)
        vec, _ = additive_pool(self.uw.expand(h.size(0), -1, -1), h, mask, *self.w)
        sents = vec.new_zeros(b * s, vec.size(-1))
        sents[real] = vec[:, 0]
        hs = self.rnn(self.sent_rnn, sents.view(b, s, -1), counts.clamp(min=1))
        mask = torch.arange(s).unsqueeze(0) < counts.unsqueeze(1)
        doc, _ = additive_pool(self.us.expand(b, -1, -1), hs, mask, *self.s)
        return self.head(doc[:, 0])


class PlainBiLSTM(nn.Module):
    def __init__(self, embed=256, hidden=128, hops=4):
        super().__init__()
        d = 2 * hidden
        self.emb = nn.Embedding(VOCAB, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.wq, self.wk, self.v = nn.Linear(d, d, bias=False), nn.Linear(d, d), nn.Linear(d, 1, bias=False)
        self.query = nn.Parameter(torch.randn(1, hops, d))
        self.head = nn.Linear(hops * d, CLASSES)

    def forward(self, ids, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.emb(ids), lengths, batch_first=True, enforce_sorted=False)
        h = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.size(1))[0]
        mask = torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        ctx, _ = additive_pool(self.query.expand(ids.size(0), -1, -1), h, mask, self.wq, self.wk, self.v)
        return self.head(ctx.flatten(1))


class PlainTransformer(nn.Module):
    def __init__(self, d=128, heads=4, layers=2, ff=256):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d, padding_idx=0)
        self.pos = nn.Embedding(4096, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, ids, lengths):
        mask = torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        x = self.emb(ids) + self.pos(torch.arange(ids.size(1)))
        x = self.enc(x, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).float()
        return self.head((x * m).sum(1) / m.sum(1))


def ours_and_plain(arch: str):
    if arch.startswith("ngram_attention"):  # ngram_attention: sparse tables (the default); +dense: model.sparse=false
        cfg = NgramConfig(embed_size=64, hops=2, ngrams=2, buckets=262144, dropout=0.0, sparse=arch == "ngram_attention")
        return NgramAttention(cfg, VOCAB, CLASSES), PlainNgram()
    if arch == "han":
        return HierarchicalAttention(HANConfig(embed_size=100, hidden_size=50, dropout=0.0), VOCAB, CLASSES,
                                     sep_id=SEP), PlainHAN()
    if arch == "bilstm_attention":
        return BiLSTMAttention(BiLSTMConfig(embed_size=256, hidden_size=128, hops=4, dropout=0.0), VOCAB,
                               CLASSES), PlainBiLSTM()
    return TransformerClassifier(TransformerConfig(hidden_size=128, heads=4, layers=2, ff_size=256, dropout=0.0),
                                 VOCAB, CLASSES), PlainTransformer()


def make_batch(batch: int, length: int, g: torch.Generator):
    """Documents of about ``length`` tokens (lengths 75-100%), a sentence end every ~20 tokens."""
    lengths = torch.randint(int(0.75 * length), length + 1, (batch,), generator=g)
    ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    ids[torch.rand(batch, length, generator=g) < 0.05] = SEP
    ids[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return ids, lengths, torch.randint(0, CLASSES, (batch,), generator=g)


def step_fn(model, arch: str, plain: bool, batch):
    """One training step. Ours: the trainer's optimizer (``build_optimizer``: AdamW, row by row for sparse
    lookup tables); plain: ``torch.optim.AdamW(fused=True)`` over every parameter."""
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True) if plain
           else build_optimizer(model, SimpleNamespace(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)))
    ids, lengths, y = batch
    if plain and arch == "han":  # the plain recipe gets its sentence grid for free (built in the data loader)
        with torch.no_grad():
            words, word_lengths, counts, _ = split_sentences(ids, lengths, SEP)
        inputs = ((words, word_lengths, counts),)
    else:
        inputs = (ids, lengths)

    def step():
        out = model(*inputs)
        logits = out[0] if isinstance(out, tuple) else out
        nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def timed(step, seconds: float) -> float:
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    return (time.perf_counter() - t0) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="ngram_attention,ngram_attention+dense,han,bilstm_attention,transformer",
                   help="ngram_attention+dense: the n-gram model with model.sparse=false (dense AdamW over its tables)")
    p.add_argument("--lengths", default="50,200,800")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print("| architecture | tokens | ours (examples/s) | plain PyTorch (examples/s) | ours / plain |")
    print("|---|---|---|---|---|")
    for arch in args.archs.split(","):
        for length in (int(x) for x in args.lengths.split(",")):
            torch.manual_seed(0)
            ours, plain = ours_and_plain(arch)
            batch = make_batch(args.batch, length, g)
            steps = {"ours": step_fn(ours.train(), arch, False, batch), "plain": step_fn(plain.train(), arch, True, batch)}
            times = {"ours": [], "plain": []}
            for _ in range(2):  # interleaved: ours, plain, ours, plain
                for name, step in steps.items():
                    times[name].append(timed(step, args.seconds / 2))
            rate = {k: args.batch / min(v) for k, v in times.items()}
            print(f"| {arch} | {length} | {rate['ours']:,.0f} | {rate['plain']:,.0f} | {rate['ours'] / rate['plain']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
