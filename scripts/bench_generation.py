"""Training and generation throughput of the generation task's GPT, against this machine's matmul speed.

For the GPT at the sizes ``task=generation model.arch=transformer`` resolves to (the default architecture is
the LSTM with self-attention since the decision tables were re-measured) and the classic "baby GPT" (4 layers, 4 heads,
width 128, context 64, batch 12 -- nanoGPT's CPU Shakespeare setting), in fp32 and under bf16 autocast:

* training tokens/s of a full step (forward, backward, fused AdamW), on random tokens of an 84-symbol
  vocabulary (the Austen character set)
* page faults per step, with glibc's allocator as the trainer sets it (``trainer.keep_freed_memory``,
  :mod:`attnapps.training.allocator`), or as glibc comes (``--malloc glibc``; the two are compared in
  separate, interleaved processes by ``scripts/bench_allocator.py``: one process cannot go back)
* model FLOP/s by nanoGPT's estimate (6 N + 12 L d T FLOPs per token) and its fraction of the matmul
  FLOP/s measured right before and after the row (a 1024 x 1024 x 1024 matmul, same dtype; the mean of
  the two, as this machine's speed drifts over minutes) -- comparable with other
  implementations' "MFU" on the same machine
* generation tokens/s with and without the key/value cache (``--new-tokens``, 500: the window restarts;
  and twice as many with a 1,024-token context, where recomputing the window is most expensive)

    python scripts/bench_generation.py [--steps 20] [--device cpu] [--new-tokens 500] [--widths 256,512]
                                       [--malloc kept|glibc]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from attnapps.decoding import sample_tokens
from attnapps.training.allocator import keep_freed_memory, minor_faults
from attnapps_tasks.generation.model import GPT, GPTConfig
from attnapps_tasks.generation.task import GenerationConfig, GenerationTask

VOCAB = 84


def matmul_flops(dtype, device, n: int = 1024, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def train_speed(size: dict, dtype: str, device, steps: int) -> tuple[float, float, float]:
    """(tokens/s, model FLOP/s, minor page faults per step) of full training steps."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(context=size["context"], d_model=size["d_model"], heads=size["heads"], layers=size["layers"],
                    dropout=0.0), VOCAB).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    b, t = size["batch"], size["context"]
    ids = torch.randint(0, VOCAB, (b, t + 1), device=device)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext())

    def step():
        with amp:
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    t0, f0 = time.perf_counter(), minor_faults()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    faults = (minor_faults() - f0) / steps
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 12 * size["layers"] * size["d_model"] * t
    return b * t / seconds, flops_per_token * b * t / seconds, faults


def generation_speed(size: dict, device, new_tokens: int = 500) -> dict:
    torch.manual_seed(0)
    model = GPT(GPTConfig(context=size["context"], d_model=size["d_model"], heads=size["heads"], layers=size["layers"],
                    dropout=0.0), VOCAB).to(device).eval()
    out = {}
    for name, cache in (("cached", True), ("uncached", False)):
        t0 = time.perf_counter()
        tokens = sample_tokens(model, [5, 6, 7], new_tokens, 1.0, seed=0, use_cache=cache, device=device)
        out[name] = (len(tokens) / (time.perf_counter() - t0), tokens)
    assert out["cached"][1] == out["uncached"][1], "cached and uncached generation differ"
    return {k: v[0] for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--new-tokens", type=int, default=500, help="tokens generated per size (twice as many with the "
                   "1,024-token context)")
    p.add_argument("--widths", default="", help="more training rows: the task's GPT at these widths (comma-separated; "
                   "a head per 32 dimensions), where bf16 autocast is re-measured against fp32")
    p.add_argument("--malloc", choices=["kept", "glibc"], default="kept",
                   help="glibc's allocator as the trainer sets it (trainer.keep_freed_memory=true) or as it comes")
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = OmegaConf.structured(GenerationConfig)
    cfg.model.arch = "transformer"  # the GPT, with the values task=generation resolves its "auto" defaults to
    GenerationTask.resolve_config(cfg)
    m, tr = cfg.model, cfg.trainer
    sizes = {
        f"GPT, model.arch=transformer ({m.layers}L {m.heads}H {m.d_model}w ctx{m.context} b{tr.batch_size})":
            dict(layers=m.layers, heads=m.heads, d_model=m.d_model, context=m.context, batch=tr.batch_size),
        "baby GPT (4L 4H 128w ctx64 b12)": dict(layers=4, heads=4, d_model=128, context=64, batch=12),
    }
    for w in (int(x) for x in args.widths.split(",") if x.strip()):
        sizes[f"GPT at width {w} ({m.layers}L {w // 32}H {w}w ctx{m.context} b{tr.batch_size})"] = dict(
            layers=m.layers, heads=w // 32, d_model=w, context=m.context, batch=tr.batch_size)
    peak = {d: matmul_flops(torch.float32 if d == "fp32" else torch.bfloat16, device) for d in ("fp32", "bf16")}
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"matmul 1024^3: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s\n")
    print("| size | precision | allocator | train tokens/s | page faults / step | model GFLOP/s | fraction of matmul |")
    print("|---|---|---|---|---|---|---|")
    label = "glibc's defaults"
    if args.malloc == "kept":
        label = "kept (trainer's)" if keep_freed_memory() else "glibc's defaults (no mallopt here)"
    for name, size in sizes.items():
        for dtype in ("fp32", "bf16"):
            torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
            before = matmul_flops(torch_dtype, device)
            tps, flops, faults = train_speed(size, dtype, device, args.steps)
            rate = (before + matmul_flops(torch_dtype, device)) / 2  # this machine drifts: the rate around the row
            print(f"| {name} | {dtype} | {label} | {tps:,.0f} | {faults:,.0f} | {flops / 1e9:.1f} | "
                  f"{flops / rate:.1%} |")
    first, baby = list(sizes)[:2]
    long = dict(sizes[first], context=1024)  # a long window: where the cache matters most
    gen_sizes = {first: sizes[first], baby: sizes[baby],
                 f"GPT, context 1024 ({2 * args.new_tokens:,} new tokens)": long}
    print("\n| size | generation tokens/s, cache | no cache | speed-up |")
    print("|---|---|---|---|")
    for name, size in gen_sizes.items():
        g = generation_speed(size, device, 2 * args.new_tokens if size is long else args.new_tokens)
        print(f"| {name} | {g['cached']:,.0f} | {g['uncached']:,.0f} | {g['cached'] / g['uncached']:.1f}x |")


if __name__ == "__main__":
    main()
