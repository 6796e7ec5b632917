"""Structured configs shared by every task, and their registration in Hydra's ConfigStore.

A task declares one dataclass that subclasses :class:`RunConfig` (adding its ``data``, ``model``, ...
sections, and overriding trainer defaults where its default run needs other values). It is stored as
option ``task=<name>`` of the ``task`` group at the root package, so ``model.attention=dot``,
``data.path=DIR`` and ``trainer.max_steps=100`` address it directly. Hydra composes in struct mode:
a key that is not in the dataclasses, or a value of the wrong type, is rejected by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING

DEFAULT_TASK = "translation"


@dataclass
class TrainerConfig:
    """The shared trainer (:class:`attnapps.training.Trainer`)."""

    max_epochs: int = 10  # stop after this many passes over the training data (0 = no limit)
    max_steps: int = 0  # stop after this many optimizer updates (0 = no limit)
    max_minutes: float = 0.0  # wall-clock budget for training (0 = no limit); resumed runs count it all
    batch_size: int = 32  # examples per update (per all processes together under torchrun)
    max_tokens: int = 0  # if > 0: batches are built by length up to this many tokens instead
    accumulate: int = 1  # gradient accumulation: batches per optimizer update
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: str = "cosine"  # constant | linear | cosine | inverse_sqrt (all after linear warmup)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # linear/cosine decay to lr * min_lr_ratio
    clip_grad_norm: float = 1.0  # 0 = off
    ema: float = 0.0  # > 0: evaluate and keep an exponential moving average of the weights (e.g. 0.999)
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU or CUDA)
    device: str = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    eval_every: int = 0  # evaluate every N updates (0 = at the end of each epoch)
    eval_max_batches: int = 0  # cap validation batches during training (0 = whole valid set)
    patience: int = 0  # early stopping after N evaluations without improvement (0 = off)
    checkpoint_every: int = 0  # write checkpoints/last.pt every N updates (0 = at each evaluation)
    log_every: int = 10  # write a log.csv row every N updates
    resume: str = "false"  # false | true (this run dir, set hydra.run.dir) | PATH (run dir or .pt)
    progress: bool = True  # tqdm progress bar
    num_workers: int = 0  # DataLoader worker processes
    threads: int = 0  # torch.set_num_threads (0 = PyTorch's default)


@dataclass
class RunConfig:
    """Root of every run's config: task-independent keys. Tasks subclass it."""

    task_name: str = MISSING
    seed: int = 1234
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def hydra_defaults() -> dict:
    """The primary config: which task by default, and where runs go."""
    return {
        "defaults": [{"task": DEFAULT_TASK}, "_self_"],
        "hydra": {
            "run": {"dir": "runs/${task_name}/${now:%Y-%m-%d_%H-%M-%S}"},
            "sweep": {"dir": "multirun/${task_name}/${now:%Y-%m-%d_%H-%M-%S}",
                      "subdir": "${hydra.job.num}_${hydra.job.override_dirname}"},
            "job": {"chdir": False},
        },
    }


def describe(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """Flatten a dataclass (type or instance) to ``(key, type, default)`` rows for ``--help``."""
    rows = []
    obj = node() if isinstance(node, type) else node
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            rows += describe(value, key + ".")
        else:
            typ = getattr(f.type, "__name__", str(f.type))
            rows.append((key, typ, repr(value)))
    return rows
