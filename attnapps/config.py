"""Structured configs shared by every task, and their registration in Hydra's ConfigStore.

A task declares one dataclass that subclasses :class:`RunConfig` (adding its ``data``, ``model``, ...
sections, and overriding trainer defaults where its default run needs other values). It is stored as
option ``task=<name>`` of the ``task`` group at the root package, so ``model.attention=dot``,
``data.path=DIR`` and ``trainer.max_steps=100`` address it directly. Hydra composes in struct mode:
a key that is not in the dataclasses, or a value of the wrong type, is rejected by name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Callable

from omegaconf import MISSING, OmegaConf

from attnapps.errors import ConfigError

DEFAULT_TASK = "translation"


class Choice(str, Enum):
    """A config value from a fixed set. OmegaConf rejects any other value by name at composition,
    listing the allowed ones; in code a member is its string (``==``, hashing, f-strings, JSON)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(str.__str__(self), spec)

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


def choice(name: str, values: list[str]) -> type[Choice]:
    """``choice("Schedule", ["constant", "cosine"])``: a :class:`Choice` type whose members are the values."""
    return Choice(name, [(v, v) for v in values])


OnError = choice("OnError", ["raise", "skip"])
Schedule = choice("Schedule", ["constant", "linear", "cosine", "inverse_sqrt"])
Precision = choice("Precision", ["fp32", "bf16"])
SentencePieceType = choice("SentencePieceType", ["unigram", "bpe"])


def _attention_choice() -> type[Choice]:
    from attnapps.attention import list_attention

    return choice("Attention", list_attention())


Attention = _attention_choice()


def plain(cfg) -> Any:
    """The config as plain Python containers, choices as strings (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# ---------------------------------------------------------------------------------- value checks
Rule = Callable[[Any], "str | None"]  # value -> why it is wrong, or None


def at_least(lo: float) -> Rule:
    return lambda v: None if v >= lo else f"must be >= {lo}"


def between(lo: float, hi: float, hi_open: bool = False, lo_open: bool = False) -> Rule:
    def rule(v):
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok and math.isfinite(v) else f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return rule


def positive(v) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be > 0"


def matches(pattern: str, what: str) -> Rule:
    return lambda v: None if re.fullmatch(pattern, str(v)) else f"must be {what}"


PROBABILITY = between(0, 1, hi_open=True)  # dropout and the like: [0, 1)


def PROBABILITY_OR_AUTO(v) -> str | None:  # noqa: N802  (a rule, like PROBABILITY): < 0 = chosen for you
    return None if v < 0 or 0 <= v < 1 else "must be in [0, 1) (or < 0: chosen from the data/architecture)"


def check_heads(model, width: int, key: str) -> None:
    """Multi-head attention (``model.arch=transformer`` or ``model.attention=multihead``) splits ``width``
    into ``model.heads`` equal parts: reject a head count that does not divide it, naming both keys."""
    uses_heads = model.arch == "transformer" or model.get("attention") == "multihead"
    if uses_heads and width % model.heads:
        raise ConfigError(f"model.heads={model.heads} must divide {key}={width}")

TRAINER_RULES: dict[str, Rule] = {
    "trainer.max_epochs": at_least(0), "trainer.max_steps": at_least(0), "trainer.max_minutes": at_least(0),
    "trainer.batch_size": at_least(1), "trainer.max_tokens": at_least(0), "trainer.accumulate": at_least(1),
    "trainer.lr": at_least(0), "trainer.weight_decay": at_least(0), "trainer.warmup_steps": at_least(0),
    "trainer.min_lr_ratio": between(0, 1), "trainer.clip_grad_norm": at_least(0), "trainer.ema": PROBABILITY,
    "trainer.device": matches(r"auto|cpu|cuda(:\d+)?|mps", "auto, cpu, cuda or cuda:N"),
    "trainer.eval_every": at_least(0), "trainer.eval_max_batches": at_least(0), "trainer.patience": at_least(0),
    "trainer.checkpoint_every": at_least(0), "trainer.log_every": at_least(1), "trainer.num_workers": at_least(0),
    "trainer.threads": at_least(0),
}


def check_rules(cfg, rules: dict[str, Rule]) -> None:
    """Raise :class:`ConfigError` naming the first key whose value breaks its rule."""
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        why = rule(value)
        if why:
            raise ConfigError(f"bad value for config key '{key}': {value!r} {why}")
    betas = OmegaConf.select(cfg, "trainer.betas")
    if betas is not None and not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"bad value for config key 'trainer.betas': {list(betas)} must each be in [0, 1)")


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
    schedule: Schedule = "cosine"  # constant | linear | cosine | inverse_sqrt (all after linear warmup)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # linear/cosine decay to lr * min_lr_ratio
    clip_grad_norm: float = 1.0  # 0 = off
    ema: float = 0.0  # > 0: evaluate and keep an exponential moving average of the weights (e.g. 0.999)
    precision: Precision = "fp32"  # fp32 | bf16 (autocast, CPU or CUDA; non-finite steps skipped and counted)
    device: str = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    eval_every: int = 0  # evaluate every N updates (0 = at the end of each epoch)
    eval_max_batches: int = 0  # cap validation batches during training (0 = whole valid set)
    patience: int = 0  # early stopping after N evaluations without improvement (0 = off)
    checkpoint_every: int = 0  # write checkpoints/last.pt every N updates (0 = at each evaluation)
    log_every: int = 10  # write a log.csv row every N updates
    resume: str = "false"  # false | true (this run dir, set hydra.run.dir) | PATH (run dir or .pt)
    resume_force: bool = False  # resume even though the data files changed since the checkpoint
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
        elif isinstance(value, Choice):
            rows.append((key, "|".join(type(value).values()), value.value))
        else:
            typ = type(value).__name__
            rows.append((key, typ, repr(value)))
    return rows
