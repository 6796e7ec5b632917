"""Evaluation of a split during and after training, and what a finished run hands over (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from attnapps.task import Diagnoser, Evaluation


@dataclass
class RunResult:
    """What a finished run hands to whoever writes its outputs."""

    metrics: dict  # the final metrics (valid.*, test.*, train.*, task extras): metrics.json
    results: dict = field(default_factory=dict)  # split -> its final Evaluation.outputs; "run" -> metrics; "training"
    task: Any = None
    model: nn.Module | None = None
    data_fingerprints: dict = field(default_factory=dict)
    device: torch.device | None = None
    loggers: list = field(default_factory=list)  # open until the run's files are written, then finished


@torch.no_grad()
def mean_loss(task, model: nn.Module, split: str, autocast: Callable, max_batches: int = 0) -> float:
    """The task's loss per item over a split (its first ``max_batches`` batches; 0 = all)."""
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for i, batch in enumerate(task.batches(split)):
        if max_batches and i >= max_batches:
            break
        with autocast():
            loss_sum, n = task.loss(model, batch)
        total += float(loss_sum)
        count += float(n)
    return float(total / count.clamp(min=1))


def evaluate_split(task, model: nn.Module, split: str, final: bool, autocast: Callable,
                   max_batches: int = 0) -> tuple[dict, Any]:
    """``(metrics, outputs)`` of a split: the loss, then the task's own evaluation (model left in train mode).
    A task with ``evaluates_loss`` returns ``loss`` from its evaluation (the same pass over the split), which
    saves the second pass of :func:`mean_loss`."""
    own = getattr(task, "evaluates_loss", False)
    metrics = {} if own else {"loss": mean_loss(task, model, split, autocast, max_batches)}
    model.eval()
    with torch.no_grad(), autocast():
        result = task.evaluate(model, split, final=final)
    model.train()
    if not isinstance(result, Evaluation):  # a task whose report needs no outputs may return its metrics
        result = Evaluation(result)
    if own and "loss" not in result.metrics:
        raise RuntimeError(f"task {task.name}: evaluates_loss is set, but evaluate() returned no 'loss'")
    metrics.update(result.metrics)
    return {k: float(v) for k, v in metrics.items()}, result.outputs


def run_diagnostics(task, model: nn.Module, cfg, train_seconds: float) -> dict:
    """``diag.*`` of a finished run on ``diag.examples`` test examples drawn with the run's seed, and what
    they cost (``diag.seconds``, and ``diag.time_fraction`` of the training time)."""
    import random
    import time

    from attnapps.diagnostics import diagnose

    if not isinstance(task, Diagnoser):
        return {}
    test = task.datasets.get("test") or []
    n = min(cfg.diag.examples, len(test))
    if n <= 0:
        return {}
    start = time.perf_counter()
    indices = sorted(random.Random(cfg.seed).sample(range(len(test)), n))
    model.eval()
    probes = task.probes(model, indices)
    out = diagnose(probes, cfg.seed, task.diag_decision, cfg.diag.permutations) if probes else {}
    out.update(task.diag_extra(model))
    if out:
        out["diag.examples"] = float(n)
        out["diag.seconds"] = time.perf_counter() - start
        out["diag.time_fraction"] = out["diag.seconds"] / max(train_seconds, 1e-9)
    return out


def peak_memory_mb(device) -> float:
    """Peak memory of this process: CUDA's allocator peak on a GPU, else the resident set's high-water mark."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
