"""Which precision the CPU's fused attention should train in, side by side in one run.

Under bf16 autocast a Transformer's projections are bf16, so ``F.scaled_dot_product_attention`` gets bf16
queries, keys and values. On the CPU its bf16 backward can be several times slower than the fp32 one,
enough to make a whole bf16 step slower than fp32. This script times forward + backward (causal) of:

* ``fp32``        fp32 inputs (a run in fp32)
* ``bf16``        bf16 inputs straight into the kernel (what plain autocast does)
* ``bf16→fp32``   bf16 inputs cast to fp32 for the kernel, the output cast back (what
                  :func:`attnapps.attention.functional.sdpa` does for narrow heads or short keys)
* ``ours``        :func:`attnapps.attention.functional.sdpa` on the bf16 inputs (its rule decides)

per shape ``(batch, heads, length, head size)``, on the same inputs (checked to give the same output to
bf16's precision), the four interleaved ``--repeat`` times: medians, and each column's ratio to ``bf16``
(> 1 = faster than plain bf16). The rule in ``attnapps/attention/functional.py`` (``FP32_HEAD_UP_TO``,
``FP32_BACKWARD_UP_TO``) was read off this table on a CPU with bf16 units (AMX); rerun it on yours.

    python scripts/bench_sdpa_precision.py [--shapes 12,4,64,32 32,1,128,192 ...] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attnapps.attention.functional import sdpa

SHAPES = ["12,4,64,32", "64,4,30,64", "32,1,128,192", "16,4,64,128", "8,4,128,128", "8,4,256,32", "16,2,128,96",
          "16,8,256,64", "32,4,128,32", "4,8,512,32", "4,4,512,64", "4,4,512,128", "2,2,1024,64"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=SHAPES, help="batch,heads,length,head_size")
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    torch.manual_seed(0)

    def cast32(q, k, v):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).to(q.dtype)

    def plain(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    kernels = {"fp32": (torch.float32, plain), "bf16": (torch.bfloat16, plain),
               "bf16→fp32": (torch.bfloat16, cast32),
               "ours": (torch.bfloat16, lambda q, k, v: sdpa(q, k, v, is_causal=True))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, causal, ms "
          f"(ratio to bf16: > 1 is faster)\n")
    print("| shape (b, h, len, d) | " + " | ".join(kernels) + " |")
    print("|---|" + "---|" * len(kernels))
    for shape in a.shapes:
        b, h, n, d = (int(x) for x in shape.split(","))
        data, steps, outs = [torch.randn(b, h, n, d) for _ in range(4)], {}, {}  # q, k, v, the output's gradient
        for name, (dtype, fn) in kernels.items():
            q, k, v = (x.to(dtype).requires_grad_() for x in data[:3])
            grad = data[3].to(dtype)
            outs[name] = fn(q, k, v).float()
            steps[name] = lambda fn=fn, q=q, k=k, v=v, grad=grad: fn(q, k, v).backward(grad)
            for _ in range(3):  # warm-up
                steps[name]()
        for name, out in outs.items():  # the same attention, to bf16's precision
            if not torch.allclose(out, outs["fp32"], atol=0.05, rtol=0.05):
                raise SystemExit(f"{shape}: {name} differs from fp32 by {(out - outs['fp32']).abs().max():.3f}")
        times = {name: [] for name in kernels}
        for _ in range(a.repeat):  # interleaved: this machine's speed drifts within seconds
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        cells = [f"{ms[k]:.2f} ({ms['bf16'] / ms[k]:.2f}x)" for k in kernels]
        print(f"| {b}, {h}, {n}, {d} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
