"""Dropout on the CPU: torch's against the core's, side by side in one run.

``torch.nn.functional.dropout`` draws a Bernoulli sample per element; :func:`attnapps.layers.dropout.dropout`
compares 16 random bits an element with a threshold and keeps the scaled mask for backward
(``attnapps/layers/dropout.py``). For each shape ``(batch, length, width)``, in the input dtype asked
for, this times

* ``forward``: the dropout of an input that needs no gradient, and
* ``forward + backward``: the dropout of an input that needs one, then the backward of a given gradient,

for both, interleaved ``--repeat`` times (medians, milliseconds), with ours over torch's as a speed-up
(> 1 = ours faster). It also prints the share of elements each kept, against ``1 - p``.

    python scripts/bench_dropout.py [--shapes 64,20,256 64,20,1024 ...] [--p 0.2] [--dtype fp32|bf16] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.layers.dropout import dropout, keep_rate  # noqa: E402

SHAPES = ["64,20,256", "64,20,1024", "12,64,128", "32,128,192", "64,50,512"]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=SHAPES, help="batch,length,width")
    p.add_argument("--p", type=float, default=0.2)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    torch.manual_seed(0)
    impls = {"torch": lambda x: F.dropout(x, a.p, training=True), "ours": lambda x: dropout(x, a.p, training=True)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; p = {a.p}, {a.dtype}; median ms of "
          f"{a.repeat}, interleaved; speed-up = torch / ours\n")
    print("| shape (batch, len, width) | forward: torch | ours | speed-up | forward + backward: torch | ours | "
          "speed-up | kept: torch / ours (expected) |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in a.shapes:
        size = tuple(int(s) for s in shape.split(","))
        x, grad = torch.randn(size, dtype=dtype), torch.randn(size, dtype=dtype)
        fwd, both, kept = {k: [] for k in impls}, {k: [] for k in impls}, {k: [] for k in impls}
        for i in range(a.repeat + 2):  # the first two rounds warm up
            for name, fn in impls.items():
                out = None

                def forward():
                    nonlocal out
                    out = fn(x)
                t_fwd = timed(forward)
                kept[name].append((out != 0).float().mean().item())
                xg = x.clone().requires_grad_()

                def forward_backward():
                    fn(xg).backward(grad)
                t_both = timed(forward_backward)
                if i >= 2:
                    fwd[name].append(t_fwd)
                    both[name].append(t_both)
        f = {k: statistics.median(v) for k, v in fwd.items()}
        b = {k: statistics.median(v) for k, v in both.items()}
        k = {n: statistics.mean(v) for n, v in kept.items()}
        print(f"| {', '.join(map(str, size))} | {f['torch']:.2f} | {f['ours']:.2f} | {f['torch'] / f['ours']:.2f}x | "
              f"{b['torch']:.2f} | {b['ours']:.2f} | {b['torch'] / b['ours']:.2f}x | "
              f"{k['torch']:.4f} / {k['ours']:.4f} ({keep_rate(a.p):.4f}) |", flush=True)


if __name__ == "__main__":
    main()
