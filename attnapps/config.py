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
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from enum import Enum
from typing import Any, Callable, get_type_hints

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


def opt(default: Any, help: str) -> Any:
    """A config field with its help text (printed by ``--help``): ``lr: float = opt(1e-3, "peak rate")``."""
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# ------------------------------------------------------------------------ per-architecture model configs
def model_section(name: str, archs: dict[str, type], default: str, help: str = "the model architecture") -> type:
    """The ``model`` section of a task's config: ``arch`` (a choice among ``archs``: name -> model class
    with a ``config_class``, or the config dataclass itself; ``default`` may be an extra choice such as
    ``auto``) and the union of the
    architectures' own config dataclasses, so that ``model.<key>=`` addresses any of them on the command
    line. A key that several architectures share must have one default. :func:`arch_config` gives the
    chosen architecture's dataclass, which its model takes whole; :func:`check_arch_keys` rejects a key
    set for an architecture that does not use it."""
    merged: dict[str, tuple] = {}
    users: dict[str, list[str]] = {}
    archs = {arch: getattr(x, "config_class", x) for arch, x in archs.items()}  # a model class or its dataclass
    types: dict[str, Any] = {}
    for arch, cls in archs.items():
        types.update(get_type_hints(cls))  # real types (the task modules use postponed annotations)
        for f in fields(cls):
            default_value = getattr(cls(), f.name)
            if f.name in merged and merged[f.name][1] != default_value:
                raise TypeError(f"model.{f.name}: architectures disagree on its default ({arch}: {default_value!r})")
            merged.setdefault(f.name, (f, default_value))
            users.setdefault(f.name, []).append(arch)
    arch_type = choice(f"{name}Arch", list(archs) if default in archs else [default, *archs])
    spec = [("arch", arch_type, field(default=default, metadata={"help": help}))]
    for key, (f, value) in merged.items():
        used_by = users[key] if len(users[key]) < len(archs) else []
        text = f.metadata.get("help", "") + (f" [{', '.join(used_by)}]" if used_by else "")
        kw = {"default_factory": f.default_factory} if f.default is MISSING_FIELD else {"default": f.default}
        spec.append((key, types[key], field(metadata={"help": text}, **kw)))
    section = make_dataclass(name, spec)
    section.archs, section.users = archs, users
    return section


def arch_config(model, cls: type):
    """``cls`` (the chosen architecture's config dataclass) filled from the ``model`` section."""
    return cls(**{f.name: _plain_value(model[f.name]) for f in fields(cls)})


def _plain_value(v):
    if isinstance(v, Choice):
        return str(v)
    if OmegaConf.is_config(v):
        return OmegaConf.to_container(v)
    return v


def check_arch_keys(model, section: type) -> None:
    """Reject a ``model.*`` key changed from its default that the chosen architecture does not use."""
    arch = str(model.arch)
    if arch not in section.archs:  # e.g. arch=auto: decided from the data, checked then
        return
    defaults = section()
    for key, archs in section.users.items():
        if arch not in archs and _plain_value(model[key]) != _plain_value(getattr(defaults, key)):
            raise ConfigError(f"model.{key}={_plain_value(model[key])} does not apply to model.arch={arch} "
                              f"(it is used by {', '.join(archs)}); its keys: "
                              f"{', '.join(f.name for f in fields(section.archs[arch]))}")


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
    "trainer.threads": at_least(0), "diag.examples": at_least(0), "diag.permutations": at_least(1),
    "explorer.examples": at_least(0), "explorer.max_mb": positive,
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

    max_epochs: int = opt(10, "stop after this many passes over the training data (0 = no limit)")
    max_steps: int = opt(0, "stop after this many optimizer updates (0 = no limit)")
    max_minutes: float = opt(0.0, "wall-clock budget for training (0 = no limit); resumed runs count it all")
    batch_size: int = opt(32, "examples per update (per all processes together under torchrun)")
    max_tokens: int = opt(0, "if > 0: batches are built by length up to this many tokens instead")
    accumulate: int = opt(1, "gradient accumulation: batches per optimizer update")
    lr: float = opt(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = opt(0.01, "AdamW weight decay (matrices only)")
    betas: tuple[float, float] = opt((0.9, 0.98), "AdamW betas")
    schedule: Schedule = opt("cosine", "constant | linear | cosine | inverse_sqrt (all after linear warmup)")
    warmup_steps: int = opt(100, "linear warmup updates")
    min_lr_ratio: float = opt(0.05, "linear/cosine decay to lr * min_lr_ratio")
    clip_grad_norm: float = opt(1.0, "0 = off")
    ema: float = opt(0.0, "> 0: evaluate and keep an exponential moving average of the weights (e.g. 0.999)")
    precision: Precision = opt("fp32", "fp32 | bf16 (autocast, CPU or CUDA; non-finite steps skipped and counted)")
    device: str = opt("auto", "auto (CUDA if present, else CPU) | cpu | cuda | cuda:N")
    eval_every: int = opt(0, "evaluate every N updates (0 = at the end of each epoch)")
    eval_max_batches: int = opt(0, "cap validation batches during training (0 = whole valid set)")
    patience: int = opt(0, "early stopping after N evaluations without improvement (0 = off)")
    checkpoint_every: int = opt(0, "write checkpoints/last.pt every N updates (0 = at each evaluation)")
    log_every: int = opt(10, "write a log.csv row every N updates")
    resume: str = opt("false", "false | true (this run dir, set hydra.run.dir) | PATH (run dir or .pt)")
    resume_force: bool = opt(False, "resume even though the data files changed since the checkpoint")
    progress: bool = opt(True, "tqdm progress bar")
    num_workers: int = opt(0, "DataLoader worker processes")
    threads: int = opt(0, "torch.set_num_threads (0 = PyTorch's default)")


@dataclass
class DiagConfig:
    """The attention diagnostics of every run (:mod:`attnapps.diagnostics`), written as ``diag.*``."""

    examples: int = opt(32, "test examples whose outputs the diagnostics explain, drawn by the seed (0 = off)")
    permutations: int = opt(3, "random permutations of the attention per explained output")


@dataclass
class ExplorerConfig:
    """``report.html``, the interactive attention explorer of every run (:mod:`attnapps.explorer`)."""

    examples: int = opt(16, "test examples explained in report.html (0 = no report.html)")
    max_mb: float = opt(4.0, "size budget of report.html in MB: examples past it are left out")


@dataclass
class RunConfig:
    """Root of every run's config: task-independent keys. Tasks subclass it."""

    task_name: str = MISSING
    seed: int = opt(1234, "seed of weights, sampling and data order")
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)


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


def describe(node: Any, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Flatten a dataclass (type or instance) to ``(key, type or allowed values, default, help)`` rows
    for ``--help``."""
    rows = []
    obj = node() if isinstance(node, type) else node
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value, typ = getattr(obj, f.name), hints.get(f.name)
        key = f"{prefix}{f.name}"
        help_text = f.metadata.get("help", "")
        if is_dataclass(value):
            rows += describe(value, key + ".")
        elif isinstance(typ, type) and issubclass(typ, Choice):
            rows.append((key, "one of " + ", ".join(typ.values()), str(value), help_text))
        elif isinstance(value, str):
            rows.append((key, "str", value if value else '""', help_text))
        else:
            rows.append((key, type(value).__name__, repr(value), help_text))
    return rows
