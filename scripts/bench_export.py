"""Inference latency, PyTorch against ONNX Runtime, for trained runs (each exported to ONNX first).

    python scripts/bench_export.py RUN_DIR [RUN_DIR ...] [--batch 1 16] [--length 20] [--repeat 30]

Per run and batch size, on the same random inputs (the task's ``export_inputs``), timed in one process,
PyTorch and ONNX Runtime interleaved call by call, each with this machine's threads; the median of
``--repeat`` calls:

* a sequence-to-sequence model: ``encode`` (with the first decoder step) and one decoder step (with a
  state ``--length`` steps in);
* a language model: one step (one token, a cache of ``--length`` positions);
* any other model: its whole forward pass over ``--length`` tokens.

The ratio is PyTorch's time over ONNX Runtime's (above 1: ONNX Runtime is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps.export.__main__ import export  # noqa: E402
from attnapps.export.graphs import model_kind, rebuild, tensors_of  # noqa: E402
from attnapps.export.runtime import OnnxModel  # noqa: E402
from attnapps.predict import load_run  # noqa: E402


def timed(fns: dict, repeat: int) -> dict:
    """``{name: median seconds}`` of each function, called in turn ``repeat`` times (after one warm-up)."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cases(task, model, onnx_model, batch: int, length: int):
    """``[(what, torch_fn, onnx_fn)]`` for one batch size."""
    gen = torch.Generator().manual_seed(batch)
    example = task.export_inputs(model, batch, length, gen)
    kind = model_kind(model)
    if kind == "module":
        return [(f"forward ({length} tokens)", lambda: model(**example.inputs), lambda: onnx_model(**example.inputs))]
    if kind == "lm":
        ids = example.inputs["ids"][:, :1]
        _, state = model.step(example.inputs["ids"], model.new_state(batch))
        _, state_rt = onnx_model.step(example.inputs["ids"], onnx_model.new_state(batch))
        tensors, spec, leaves = tensors_of(state)  # the same cache for every call (a step adds to it)
        return [(f"step (cache {example.inputs['ids'].size(1)})",
                 lambda: model.step(ids, rebuild(tensors, spec, leaves)), lambda: onnx_model.step(ids, state_rt))]
    bos = example.bos
    tokens = torch.full((batch,), bos, dtype=torch.long)
    state, state_rt = model.encode(**example.inputs), onnx_model.encode(**example.inputs)
    _, state_rt = onnx_model.step(tokens, state_rt)  # the stored first step
    for _ in range(length):
        lp, state = model.step(tokens, state)
        _, state_rt = onnx_model.step(tokens, state_rt)
        tokens = lp.argmax(-1)
    tensors, spec, leaves = tensors_of(state)
    return [("encode + first step", lambda: model.step(torch.full((batch,), bos), model.encode(**example.inputs)),
             lambda: onnx_model.step(tokens, onnx_model.encode(**example.inputs))),
            (f"decoder step ({length} in)", lambda: model.step(tokens, rebuild(tensors, spec, leaves)),
             lambda: onnx_model.step(tokens, state_rt))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories (exported to RUN/export/onnx when not yet)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--length", type=int, default=20, help="tokens of input / decoder steps / cache positions")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args(argv)
    print(f"threads: {torch.get_num_threads()} (PyTorch and ONNX Runtime alike); median of {args.repeat} calls\n")
    header = f"{'task':<15} {'arch':<17} {'batch':>5}  {'graph':<26} {'PyTorch ms':>10} {'ORT ms':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for run in args.runs:
        run = Path(run)
        out = run / "export" / "onnx"
        if not (out / "onnx.json").is_file():
            export(run, "onnx", out)
        task, model = load_run(run)
        onnx_model = OnnxModel(out, threads=torch.get_num_threads())
        arch = str(task.cfg.model.get("arch", "")) if "model" in task.cfg else ""
        with torch.no_grad(), (task.inference_context(model) if hasattr(task, "inference_context")
                               else torch.no_grad()):
            for batch in args.batch:
                for what, fn_pt, fn_rt in cases(task, model, onnx_model, batch, args.length):
                    t = timed({"pt": fn_pt, "rt": fn_rt}, args.repeat)
                    print(f"{task.name:<15} {arch:<17} {batch:>5}  {what:<26} {t['pt'] * 1e3:>10.2f} "
                          f"{t['rt'] * 1e3:>8.2f} {t['pt'] / t['rt']:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
