"""The reference for ``scripts/bench_toolkits.py --pairs gpt``: a character GPT trained by a plain PyTorch
loop, written the way nanoGPT's ``model.py``/``train.py`` write it (one fused QKV projection, SDPA with
``is_causal``, no biases, weight tying, GPT-2 initialisation, AdamW with decay on matrices only -- fused
only on CUDA, as nanoGPT decides -- gradient clipping at 1.0, warm-up then cosine learning rate, random
windows of the text as batches). No framework around it: what a practitioner would type.

    python scripts/toolkits/nanogpt_loop.py TEXT.txt [--steps 300] [--layers 4] [--heads 4] [--width 128]
                                            [--context 64] [--batch 12] [--seed 1] [--fused]

Prints ``step S seconds T tokens N`` every 10 steps (T: wall seconds since the loop started, N: the target
tokens trained on so far).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each (b, t, d)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (b, h, t, d/h)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        self.attn = SelfAttention(width, heads)
        self.fc, self.out = nn.Linear(width, 4 * width, bias=False), nn.Linear(4 * width, width, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    def __init__(self, vocab: int, layers: int, heads: int, width: int, context: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, ids, targets):
        x = self.tok(ids) + self.pos(torch.arange(ids.size(1)))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fused", action="store_true", help="fused AdamW on the CPU too (nanoGPT fuses on CUDA only)")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in chars], dtype=np.uint16)[
        np.searchsorted(np.array([ord(c) for c in chars]), np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))]
    model = CharGPT(len(chars), a.layers, a.heads, a.width, a.context)
    params = [q for q in model.parameters() if q.requires_grad]
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": 0.1},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.99), fused=a.fused)  # nanoGPT: fused only on CUDA

    def lr_at(step: int) -> float:
        warmup = 100
        if step < warmup:
            return a.lr * (step + 1) / warmup
        return 0.1 * a.lr + 0.45 * a.lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, a.steps - warmup))))

    def batch():
        i = torch.randint(len(data) - a.context, (a.batch,))
        x = torch.stack([torch.from_numpy(data[j:j + a.context].astype(np.int64)) for j in i])
        y = torch.stack([torch.from_numpy(data[j + 1:j + 1 + a.context].astype(np.int64)) for j in i])
        return x, y

    model.train()
    start, tokens = time.perf_counter(), 0
    for step in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = batch()
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += y.numel()
        if step % 10 == 0:
            print(f"step {step} seconds {time.perf_counter() - start:.4f} tokens {tokens} loss {loss.item():.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
