"""Benchmark the attention core side by side, in one run (ratios, not absolute targets).

For each length (default 32/128/512/2048) and mask (none / padding / causal) it times forward and
forward+backward of:

* ``multihead``            ours, fast path (SDPA, no weights)
* ``multihead+weights``    ours, explicit path (need_weights=True)
* ``sdpa_ref``             F.scaled_dot_product_attention + the same projections written out by hand
* ``nn.MHA``               torch.nn.MultiheadAttention (need_weights=False)
* ``naive``                the same projections + matmul-softmax-matmul
* ``scaled_dot`` / ``dot`` / ``general`` / ``additive``  the single-head variants (additive only
  where its (q_len, k_len, hidden) tensor fits)

and reports the median time, GFLOP/s (against a matmul measured in the same run), and the bytes saved
for backward (``saved_tensors_hooks``: exact on any device; linear in length means no (L, L) matrix kept).
Then the additive decoder loop: precomputed key projection vs recomputed per step.

    python scripts/bench_attention.py [--lengths 32 128 512 2048] [--width 256] [--heads 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from attnapps.attention import build_attention, causal_mask, invert, lengths_to_mask


def timeit(fn, repeat: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def saved_bytes(fn) -> int:
    """Bytes of distinct tensors autograd keeps for backward while running ``fn``."""
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return total[0]


def matmul_gflops(device, sync) -> float:
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    t = timeit(lambda: a @ b, 5, sync)
    return 2 * 1024**3 / t / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 2048])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--tokens", type=int, default=8192, help="batch * length per measurement")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    e, h = args.width, args.heads
    peak = matmul_gflops(device, sync)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"width={e} heads={h}  matmul 1024^3: {peak:.1f} GFLOP/s\n")

    ours = build_attention("multihead", e, heads=h).to(device)
    ref = nn.MultiheadAttention(e, h, batch_first=True).to(device)
    ref.load_state_dict(ours.state_dict())
    single = {n: build_attention(n, e, e, hidden_size=e).to(device) for n in ("scaled_dot", "dot", "general", "additive")}

    def sdpa_ref(x, mask, causal):
        q, k, v = F.linear(x, ours.in_proj_weight, ours.in_proj_bias).chunk(3, -1)
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, h, e // h).transpose(1, 2) for t in (q, k, v))
        m = None if mask is None else mask[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal)
        return F.linear(o.transpose(1, 2).reshape(b, n, e), ours.out_proj.weight, ours.out_proj.bias)

    def naive(x, mask, causal):
        q, k, v = F.linear(x, ours.in_proj_weight, ours.in_proj_bias).chunk(3, -1)
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, h, e // h).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / (e // h) ** 0.5
        if mask is not None:
            s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        if causal:
            s = s.masked_fill(~causal_mask(n, device=x.device)[:, None], float("-inf"))
        o = s.softmax(-1) @ v
        return F.linear(o.transpose(1, 2).reshape(b, n, e), ours.out_proj.weight, ours.out_proj.bias)

    header = f"{'L':>5} {'mask':>7} {'impl':>18} {'fwd ms':>9} {'fwd+bwd ms':>11} {'GFLOP/s':>8} {'% matmul':>8} {'saved MiB':>10} {'vs sdpa_ref':>11}"
    print(header)
    print("-" * len(header))
    for n in args.lengths:
        b = max(1, args.tokens // n)
        x = torch.randn(b, n, e, device=device, requires_grad=True)
        lengths = torch.randint(n // 2, n + 1, (b,), device=device)
        lengths[0] = n
        for mask_kind in ("none", "padding", "causal"):
            mask = lengths_to_mask(lengths, n) if mask_kind == "padding" else None
            causal = mask_kind == "causal"
            impls = {
                "multihead": lambda: ours(x, x, x, mask=mask, is_causal=causal)[0],
                "multihead+weights": lambda: ours(x, x, x, mask=mask, is_causal=causal, need_weights=True)[0],
                "sdpa_ref": lambda: sdpa_ref(x, mask, causal),
                "nn.MHA": lambda: ref(x, x, x, key_padding_mask=invert(mask), need_weights=False,
                                      attn_mask=invert(causal_mask(n, device=device)[0]) if causal else None,
                                      is_causal=causal)[0],
                "naive": lambda: naive(x, mask, causal),
                "scaled_dot": lambda: single["scaled_dot"](x, x, mask=mask, is_causal=causal)[0],
                "dot": lambda: single["dot"](x, x, mask=mask, is_causal=causal)[0],
                "general": lambda: single["general"](x, x, mask=mask, is_causal=causal)[0],
            }
            if b * n * n * e * 4 <= 2**30:  # additive's (batch, q, k, hidden) tensor under 1 GiB
                impls["additive"] = lambda: single["additive"](x, x, mask=mask, is_causal=causal)[0]
            flops_mh = b * (4 * n * e * e * 2 + 2 * n * n * e * 2)
            flops_single = b * 2 * n * n * e * 2
            results = {}
            for name, fn in impls.items():
                with torch.no_grad():
                    fwd = timeit(fn, args.repeat, sync)

                def step():
                    fn().sum().backward()
                fb = timeit(step, args.repeat, sync)
                mem = saved_bytes(fn) / 2**20
                results[name] = (fwd, fb, mem)
            base = results["sdpa_ref"][1]
            for name, (fwd, fb, mem) in results.items():
                flops = flops_mh if name in ("multihead", "multihead+weights", "sdpa_ref", "nn.MHA", "naive") else flops_single
                gflops = 3 * flops / fb / 1e9  # backward ~ 2x forward
                print(f"{n:>5} {mask_kind:>7} {name:>18} {fwd * 1e3:>9.2f} {fb * 1e3:>11.2f} {gflops:>8.1f} "
                      f"{100 * gflops / peak:>7.0f}% {mem:>10.1f} {fb / base:>10.2f}x")
            print()

    # Additive attention in a decoder loop: precompute W_k k once, or recompute it every step.
    src, steps, batch = 512, 50, 32
    attn = build_attention("additive", e, e).to(device)
    keys = torch.randn(batch, src, e, device=device)
    queries = torch.randn(batch, steps, 1, e, device=device)
    mask = lengths_to_mask(torch.full((batch,), src, device=device), src)

    @torch.no_grad()
    def recompute():
        for t in range(steps):
            attn(queries[:, t], keys, mask=mask)

    @torch.no_grad()
    def precomputed():
        pk = attn.project_keys(keys)
        for t in range(steps):
            attn(queries[:, t], keys, mask=mask, projected_keys=pk)

    t_re, t_pre = timeit(recompute, 3, sync), timeit(precomputed, 3, sync)
    print(f"additive decoder loop (batch {batch}, source {src}, {steps} steps): recompute keys {t_re * 1e3:.1f} ms, "
          f"precomputed {t_pre * 1e3:.1f} ms -> {t_re / t_pre:.2f}x faster")


if __name__ == "__main__":
    main()
