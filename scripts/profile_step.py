"""Where a training step's time goes, for each task's default (or any ``key=value`` settings), measured with
``torch.profiler`` on the trainer's own step (:class:`attnapps.training.updater.Updater`), its own batches
(the task's sampler and collate) and its own optimizer.

    python scripts/profile_step.py [--tasks translation,classification,captioning,generation] [--steps 20]
                                   [--warmup 5] [--variants eager,compile,bf16 | --floor] [KEY=VALUE ...]
                                   (keys apply to every task listed)

Each step is cut into phases with ``record_function``: ``data`` (the next batch: collate, to the device),
``forward`` (the loss), ``backward``, ``optimizer`` (gradient scaling and clipping, the AdamW step, the
schedule). Inside forward and backward, the profiler's operators are grouped by what they compute, each by
its self time (time not spent in the operators it calls):

* ``matmul``: ``mm``/``addmm``/``bmm``/``baddbmm``/``addmv``/``linear``/``matmul`` -- projections,
  feed-forward layers, output layers, and the attention products written as matmuls;
* ``attention``: fused attention kernels (``scaled_dot_product_*``) and (non-log) softmax;
* ``recurrent``: the RNN kernels (GRU/LSTM, cells and layers);
* ``embedding``: lookups and their backward (``embedding*``, ``index_select``, ``index_add``/``put``);
* ``other ops``: every other operator (elementwise, reductions, copies, the loss);
* ``overhead``: the rest of the phase's wall time -- Python and dispatch between operators -- and the
  autograd engine's own wrappers around each backward function.

An operator called by a grouped one counts in the caller's group (the matmuls inside a GRU kernel are
``recurrent``, those inside a fused attention kernel ``attention``).

Prints one Markdown row per task: milliseconds a step and each group's share of it. The README's summary
is this output.

With ``--variants``, no profile: each variant's milliseconds a step side by side on the same batches
(``eager``: fp32; ``compile``: fp32 with ``trainer.compile=true``, the warm-up's seconds show the
compilation; ``bf16``: ``trainer.precision=bf16`` autocast; ``torch-dropout``: ``trainer.fast_dropout=false``;
``default``: the task's own settings; ``stepped-loop``, translation only: ``model.fused_loop=false``, the
input-fed decoder's steps under autograd), which is how the ``trainer.compile``, ``trainer.precision``,
``trainer.fast_dropout`` and ``model.fused_loop`` defaults were decided on this CPU. The speed-ups are over ``eager`` when it is
listed, else over the first variant.

With ``--floor``, no profile: each task's matmul work a step (GFLOP, forward and backward, counted by
``torch.utils.flop_counter`` over ``--steps`` batches), the milliseconds it would take at this CPU's fp32
matmul peak (measured on 2048 x 2048 products), and the step's median milliseconds: how far a step is
from the time its matmuls alone need.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.data.batching import to_device  # noqa: E402
from attnapps.task import get_task, list_tasks  # noqa: E402
from attnapps.training import Trainer  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer")
GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "aten::linear",
               "aten::matmul", "aten::_addmm_activation", "aten::addbmm"),
    "attention": ("scaled_dot_product", "flash_attention", "aten::softmax", "aten::_softmax",
                  "aten::_softmax_backward_data"),
    "recurrent": ("gru", "lstm", "rnn_"),
    "embedding": ("embedding", "aten::index_select", "aten::index_add", "aten::index_put", "aten::_index_put"),
}


def own_group(name: str) -> str | None:
    if "log_softmax" in name:
        return None
    for group, keys in GROUPS.items():
        if any(k in name.lower() if not k.startswith("aten::") else name == k or name.startswith(k + "_")
               for k in keys):
            return group
    return None


def group_of(event) -> str:
    """An operator's group: that of its outermost grouped caller (a matmul inside a GRU kernel is
    ``recurrent``), else its own; the autograd engine's wrappers around each backward function count as
    ``overhead``."""
    group, e = None, event
    while e is not None and not e.name.startswith("phase:"):
        group = own_group(e.name) or group
        e = e.cpu_parent
    if group is None and (event.name.startswith("autograd::engine") or event.name.endswith("Backward0")
                          or event.name.endswith("Backward1")):
        return "overhead"
    return group or "other ops"


def build(task: str, keys: list[str], run_dir: str) -> Trainer:
    """The trainer of ``task=TASK KEYS...``, built as a run builds it (data, model, optimizer), not run."""
    cls = get_task(task)
    cfg = OmegaConf.merge(OmegaConf.structured(cls.config_class), OmegaConf.from_dotlist(keys))
    trainer = Trainer(cls, cfg, run_dir)
    trainer._build()
    trainer.model.train()
    return trainer


def profile_task(task: str, keys: list[str], steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build(task, keys, tmp)
        loader = DataLoader(trainer.task.datasets["train"], batch_sampler=trainer.sampler,
                            collate_fn=trainer.task.train_collate, num_workers=0)
        batches = iter(loader)

        def batch():
            nonlocal batches
            try:
                return next(batches)
            except StopIteration:
                batches = iter(loader)
                return next(batches)

        updater, device = trainer.updater, trainer.device
        loss_fn = updater.loss

        def timed_loss(model, b):
            with record_function("phase:forward"):
                out = loss_fn(model, b)
            return out

        def step():
            with record_function("phase:data"):
                b = to_device(batch(), device)
            updater.loss = timed_loss
            backward = torch.Tensor.backward

            def traced_backward(self, *a, **k):
                with record_function("phase:backward"):
                    return backward(self, *a, **k)
            opt_step = trainer.optimizer.step

            def traced_step(*a, **k):
                with record_function("phase:optimizer"):
                    return opt_step(*a, **k)
            torch.Tensor.backward, trainer.optimizer.step = traced_backward, traced_step
            try:
                with record_function("phase:update"):
                    updater.step([b])
            finally:
                torch.Tensor.backward, trainer.optimizer.step = backward, opt_step
        for _ in range(warmup):
            step()
        walls = []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                walls.append(time.perf_counter() - t0)
        return summarise(prof.events(), walls, steps) | {"params": sum(p.numel() for p in trainer.model.parameters()),
                                                          "arch": str(trainer.cfg.model.arch)}


def summarise(events, walls: list[float], steps: int) -> dict:
    """Microseconds per group, from the events: each operator is charged to the innermost phase around it."""
    phases = [e for e in events if e.name.startswith("phase:")]
    ops = [e for e in events if not e.name.startswith("phase:") and not e.name.startswith("ProfilerStep")]
    total = {g: 0.0 for g in ("matmul", "attention", "recurrent", "embedding", "other ops", "overhead",
                              "data", "optimizer", "step rest")}
    inside = {p.id: 0.0 for p in phases}  # op self time inside each compute phase
    compute = [p for p in phases if p.name in ("phase:forward", "phase:backward")]
    for p in phases:
        if p.name == "phase:data":
            total["data"] += p.cpu_time_total
        elif p.name == "phase:optimizer":
            total["optimizer"] += p.cpu_time_total
    starts = sorted((p.time_range.start, p.time_range.end, p.id) for p in compute)
    for op in ops:
        s = op.time_range.start
        home = next((pid for a, b, pid in starts if a <= s and op.time_range.end <= b), None)
        if home is None:
            continue
        total[group_of(op)] += op.self_cpu_time_total
        inside[home] += op.self_cpu_time_total
    for p in compute:
        total["overhead"] += max(0.0, p.cpu_time_total - inside[p.id])
    wall_us = sum(walls) * 1e6
    accounted = sum(total.values())
    total["step rest"] = max(0.0, wall_us - accounted)  # the updater's own work: scaling, clipping, the schedule
    return {"ms": statistics.median(walls) * 1e3, "share": {k: v / wall_us for k, v in total.items()}}


def time_variant(task: str, keys: list[str], steps: int, warmup: int) -> dict:
    """Milliseconds a step (the median of ``steps``, after ``warmup`` steps) of the trainer built from
    ``keys``, on the same batches for every variant; and the warm-up's seconds (where compilation goes)."""
    with tempfile.TemporaryDirectory() as tmp:
        return time_steps(build(task, keys, tmp), steps, warmup)


def time_steps(trainer: Trainer, steps: int, warmup: int) -> dict:
    """:func:`time_variant` for a trainer already built."""
    loader = DataLoader(trainer.task.datasets["train"], batch_sampler=trainer.sampler,
                        collate_fn=trainer.task.train_collate, num_workers=0)
    it = iter(loader)
    batches = [to_device(next(it), trainer.device) for _ in range(min(warmup + steps, len(loader)))]
    t0 = time.perf_counter()
    for b in batches[:warmup]:
        trainer.updater.step([b])
    first = time.perf_counter() - t0
    walls = []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        trainer.updater.step([b])
        walls.append(time.perf_counter() - t0)
    return {"ms": statistics.median(walls) * 1e3, "warmup_s": first}


VARIANTS = {"eager": ["trainer.precision=fp32"], "compile": ["trainer.precision=fp32", "trainer.compile=true"],
            "bf16": ["trainer.precision=bf16"],  # (explicit: generation's default precision is auto)
            "torch-dropout": ["trainer.fast_dropout=false"], "default": [],  # (the task's own precision)
            "stepped-loop": ["model.fused_loop=false"]}  # (translation's RNN: autograd through each decoder step)


def compare(tasks: list[str], keys: list[str], variants: list[str], steps: int, warmup: int) -> None:
    """``--variants``: one row per task, ms a step under each variant (and the warm-up's seconds, where
    ``torch.compile`` compiles), with each variant's speed-up over eager."""
    first = "eager" if "eager" in variants else variants[0]  # the speed-ups are over this one
    print("| Task | " + " | ".join(f"{v}: ms / step (warm-up s)" for v in variants) + " | " +
          " | ".join(f"{v} / {first}" for v in variants if v != first) + " |")
    print("|---|" + "---|" * (2 * len(variants) - 1))
    for task in tasks:
        r = {v: time_variant(task, keys + VARIANTS[v], steps, warmup) for v in variants}
        base = r[first]["ms"]
        print(f"| {task} | " + " | ".join(f"{r[v]['ms']:.1f} ({r[v]['warmup_s']:.1f})" for v in variants) + " | "
              + " | ".join(f"{base / r[v]['ms']:.2f}x" for v in variants if v != first) + " |", flush=True)


def peak_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """This machine's matmul rate in GFLOP/s: the best of ``repeats`` ``n x n x n`` products in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def floor(tasks: list[str], keys: list[str], steps: int, warmup: int) -> None:
    """``--floor``: each task's matmul work a step (``torch.utils.flop_counter`` over the forward and backward
    of ``steps`` batches) and what it would take at this CPU's fp32 matmul peak, beside the step's median."""
    from torch.utils.flop_counter import FlopCounterMode

    peak = peak_rate(torch.float32)
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s (the best of five 2048 x 2048 x 2048 products); bf16: "
          f"{peak_rate(torch.bfloat16):.0f} GFLOP/s\n")
    print("| Task | GFLOP a step (matmuls, forward + backward) | ms at the fp32 peak | ms a step (median) | "
          "the step's matmul floor / the step |")
    print("|---|---|---|---|---|")
    for task in tasks:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = build(task, keys, tmp)
            loader = DataLoader(trainer.task.datasets["train"], batch_sampler=trainer.sampler,
                                collate_fn=trainer.task.train_collate, num_workers=0)
            it, flops = iter(loader), 0
            for _ in range(min(steps, len(loader))):
                b = to_device(next(it), trainer.device)
                counter = FlopCounterMode(display=False)
                with counter, trainer.autocast():
                    loss, _ = trainer.updater.loss(trainer.model, b)
                    loss.float().backward()
                flops += counter.get_total_flops()
                trainer.model.zero_grad(set_to_none=True)
            gflop = flops / min(steps, len(loader)) / 1e9
            ms = time_steps(trainer, steps, warmup)["ms"]  # (the same trainer: its data prepared once)
        print(f"| {task} | {gflop:.3g} | {1e3 * gflop / peak:.3g} | {ms:.1f} | {100e3 * gflop / peak / ms:.2g}% |",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="translation,classification,captioning,generation")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--variants", default="", help="instead of the profile, time these side by side: any of "
                   f"{','.join(VARIANTS)} (eager: fp32; compile: fp32 compiled; bf16: trainer.precision=bf16; "
                   "torch-dropout: trainer.fast_dropout=false; default: the task's own settings; stepped-loop, "
                   "translation only: model.fused_loop=false)")
    p.add_argument("--floor", action="store_true", help="instead of the profile: each step's matmul GFLOP and "
                   "the milliseconds they would take at this CPU's fp32 matmul peak, beside the step's")
    p.add_argument("keys", nargs="*", help="key=value settings for every task (as on the command line)")
    args = p.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in list_tasks()]
    if unknown:
        sys.exit(f"--tasks: unknown {unknown}; choose from {list_tasks()}")
    keys = ["trainer.progress=false", *args.keys]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        sys.exit(f"--variants={args.variants}: choose from {','.join(VARIANTS)}")
    if args.floor:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} batches counted and timed "
              f"after {args.warmup}; settings: {' '.join(args.keys) or 'the defaults'}\n")
        return floor(tasks, keys, args.steps, args.warmup)
    if variants:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; the median of {args.steps} steps after "
              f"{args.warmup} warm-up steps; settings: {' '.join(args.keys) or 'the defaults'}\n")
        return compare(tasks, keys, variants, args.steps, args.warmup)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} profiled steps after "
          f"{args.warmup}; settings: {' '.join(args.keys) or 'the defaults'}\n")
    cols = ["matmul", "attention", "recurrent", "embedding", "other ops", "overhead", "optimizer", "data", "step rest"]
    print("| Task (arch, parameters) | ms / step | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for task in tasks:
        r = profile_task(task, keys, args.steps, args.warmup)
        print(f"| {task} ({r['arch']}, {r['params'] / 1e6:.1f}M) | {r['ms']:.1f} | "
              + " | ".join(f"{100 * r['share'][c]:.0f}%" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
