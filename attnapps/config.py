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
Precision = choice("Precision", ["fp32", "bf16", "fp16", "bf16-output", "auto"])
AfterEarlyStop = choice("AfterEarlyStop", ["average", "none"])
SentencePieceType = choice("SentencePieceType", ["unigram", "bpe"])


def _attention_choice() -> type[Choice]:
    from attnapps.attention import list_attention

    return choice("AttentionVariant", list_attention())


AttentionVariant = _attention_choice()  # model.attention's type (the nn.Module base is attnapps.attention.Attention)


def opt(default: Any, help: str, check: Callable[[Any], "str | None"] | None = None) -> Any:
    """A config field with its help text (printed by ``--help``) and, optionally, the rule its value must
    keep (:data:`Rule`: value -> why it is wrong, or None): ``lr: float = opt(1e-3, "peak rate",
    check=at_least(0))``. The field is the one place of the rule: :func:`field_rules` collects them, so a
    rule cannot name a key that does not exist."""
    meta = {"help": help, **({"check": check} if check is not None else {})}
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_rules(node: Any, prefix: str = "") -> dict[str, Callable]:
    """``{dotted key: rule}`` of every field with a ``check`` in the dataclass ``node`` (a type or an
    instance) and, recursively, in its sections (the section's default decides its type, so a task's
    subclass of a core section brings its own rules)."""
    if node is None:
        return {}
    cls = node if isinstance(node, type) else type(node)
    rules = {}
    for f in fields(cls):
        if "check" in f.metadata:
            rules[prefix + f.name] = f.metadata["check"]
        default = f.default_factory() if f.default_factory is not MISSING_FIELD else f.default
        if is_dataclass(default):
            rules.update(field_rules(default, f"{prefix}{f.name}."))
    return rules


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
        check = {"check": f.metadata["check"]} if "check" in f.metadata else {}
        spec.append((key, types[key], field(metadata={"help": text, **check}, **kw)))
    section = make_dataclass(name, spec)
    section.archs, section.users = archs, users
    return section


def arch_keys(model) -> set[str]:
    """The keys the chosen architecture of a ``model`` section (:func:`model_section`) uses: what a task
    asks (``"attention" in arch_keys(cfg.model)``) instead of testing the architecture's name."""
    arch = getattr(OmegaConf.get_type(model), "archs", {}).get(str(model.arch))
    return {f.name for f in fields(arch)} if arch is not None else set()


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
    """Multi-head attention splits ``width`` into ``model.heads`` equal parts: reject a head count that
    does not divide it, naming both keys. The chosen architecture says whether it has heads: its config
    has a ``heads`` field and either always attends with several heads (no ``attention`` field) or
    attends with the variant ``model.attention=multihead``."""
    keys = arch_keys(model)  # none: not a per-architecture section, or an architecture still to be chosen (auto)
    uses_heads = "heads" in keys and ("attention" not in keys or str(model.attention) == "multihead")
    if uses_heads and width % model.heads:
        raise ConfigError(f"model.heads={model.heads} must divide {key}={width}")



def check_rules(cfg, rules: dict[str, Rule]) -> None:
    """Raise :class:`ConfigError` naming the first key whose value breaks its rule."""
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        why = rule(value)
        if why:
            raise ConfigError(f"bad value for config key '{key}': {value!r} {why}")


def each(rule: Rule) -> Rule:
    """The rule for a list whose every item keeps ``rule``."""
    def check(values):
        why = next((w for w in map(rule, values) if w), None)
        return f"must each {why.removeprefix('must ')}" if why else None
    return check


@dataclass
class TrainerConfig:
    """The shared trainer (:class:`attnapps.training.Trainer`)."""

    max_epochs: int = opt(10, "stop after this many passes over the training data (0 = no limit)", check=at_least(0))
    max_steps: int = opt(0, "stop after this many optimizer updates (0 = no limit)", check=at_least(0))
    max_minutes: float = opt(0.0, "wall-clock budget for training (0 = no limit); resumed runs count it all",
                             check=at_least(0))
    batch_size: int = opt(32, "examples per update (per all processes together under torchrun)", check=at_least(1))
    max_tokens: int = opt(0, "if > 0: batches are built by length up to this many tokens instead", check=at_least(0))
    accumulate: int = opt(1, "gradient accumulation: batches per optimizer update", check=at_least(1))
    lr: float = opt(1e-3, "peak learning rate (AdamW)", check=at_least(0))
    weight_decay: float = opt(0.01, "AdamW weight decay (matrices only)", check=at_least(0))
    betas: tuple[float, float] = opt((0.9, 0.98), "AdamW betas", check=each(between(0, 1, hi_open=True)))
    schedule: Schedule = opt("cosine", "constant | linear | cosine | inverse_sqrt (all after linear warmup)")
    warmup_steps: int = opt(100, "linear warmup updates", check=at_least(0))
    min_lr_ratio: float = opt(0.05, "linear/cosine decay to lr * min_lr_ratio", check=between(0, 1))
    clip_grad_norm: float = opt(1.0, "0 = off", check=at_least(0))
    ema: float = opt(0.0, "> 0: evaluate and keep an exponential moving average of the weights (e.g. 0.999)",
                     check=PROBABILITY)
    precision: Precision = opt("fp32", "fp32 | bf16 (autocast, CPU or CUDA; non-finite steps skipped and counted) | "
                               "fp16 (autocast with torch.amp.GradScaler's loss scaling: for CUDA; runs on CPU too, "
                               "slowly; overflowing steps skipped, counted, and the scale lowered) | bf16-output (the "
                               "output layer over the vocabulary in bf16 while training, the rest fp32; models with an "
                               "attnapps.layers.OutputLayer) | auto (bf16 on a GPU with bf16 support, or on a CPU with "
                               "bf16 units (AMX, AVX512-BF16) bf16 or bf16-output for a model measured to gain from it; "
                               "else fp32; config.yaml records the choice)")
    compile: bool = opt(False, "torch.compile the model's forward (Inductor; the first steps compile; pays on GPUs, "
                        "see the README's Performance section for this CPU)")
    device: str = opt("auto", "auto (CUDA if present, else CPU) | cpu | cuda | cuda:N",
                      check=matches(r"auto|cpu|cuda(:\d+)?|mps", "auto, cpu, cuda or cuda:N"))
    eval_every: int = opt(0, "evaluate every N updates (0 = at the end of each epoch)", check=at_least(0))
    eval_max_batches: int = opt(0, "cap validation batches during training (0 = whole valid set)", check=at_least(0))
    patience: int = opt(0, "early stopping after N evaluations without improvement (0 = off)", check=at_least(0))
    patience_after: float = opt(0.5, "early stopping may end a run only once this fraction of its budget (time, "
                                "or steps/epochs) is spent; 0 = at any time", check=between(0, 1))
    after_early_stop: AfterEarlyStop = opt("average", "the budget left after early stopping: average (SWA: train on "
                                           "from the best weights at the LR of the stop, kept constant; the average "
                                           "of the weights at each evaluation replaces the best model when better on "
                                           "valid) | none (end the run)")
    checkpoint_every: int = opt(0, "write checkpoints/last.pt every N updates (0 = at each evaluation)",
                                check=at_least(0))
    keep_last: int = opt(0, "keep the weights of the last N evaluations, checkpoints/step_<update>.pt (for "
                         "trainer.average_last and python -m attnapps.average; 0 = none)", check=at_least(0))
    average_last: int = opt(0, "> 1: at the end, average the weights of the last N evaluations (keeping at least "
                            "N), evaluate the average on valid and keep it as the model when it is better there "
                            "(checkpoints/average.pt either way)", check=at_least(0))
    log_every: int = opt(10, "write a log.csv row every N updates", check=at_least(1))
    loggers: list[str] = opt(["csv"], "where the run's metrics go: csv (log.csv, always) and any of tensorboard, "
                             "wandb (offline unless WANDB_MODE says otherwise), mlflow (MLFLOW_TRACKING_URI, else a "
                             "file store in the run directory), e.g. trainer.loggers=[csv,mlflow]; one that cannot "
                             "start is a warning, not a failed run",
                             check=each(matches(r"csv|tensorboard|wandb|mlflow", "csv, tensorboard, wandb or mlflow")))
    resume: str = opt("false", "false | true (this run dir, set hydra.run.dir) | PATH (run dir or .pt)")
    resume_force: bool = opt(False, "resume even though the data files changed since the checkpoint")
    progress: bool = opt(True, "tqdm progress bar")
    num_workers: int = opt(0, "DataLoader worker processes (batches go through pinned memory on CUDA)",
                           check=at_least(0))
    threads: int = opt(0, "torch.set_num_threads (0 = PyTorch's default)", check=at_least(0))
    keep_freed_memory: bool = opt(True, "Linux (glibc): freed tensors' memory stays in the process for the next step "
                                  "instead of going back to the kernel, which costs a page fault per 4 KiB when "
                                  "touched again (attnapps/training/allocator.py); false = glibc's defaults")
    fast_dropout: bool = opt(True, "CPU: dropout masks from 16 random bits an element, about 4x faster than torch's "
                             "bernoulli_ (p rounded to 1/65536; attnapps/layers/dropout.py); false = "
                             "torch.nn.functional.dropout. Other devices: torch's always")


@dataclass
class DiagConfig:
    """The attention diagnostics of every run (:mod:`attnapps.diagnostics`), written as ``diag.*``."""

    examples: int = opt(32, "test examples whose outputs the diagnostics explain, drawn by the seed (0 = off)",
                        check=at_least(0))
    permutations: int = opt(3, "random permutations of the attention per explained output", check=at_least(1))


@dataclass
class ExplorerConfig:
    """``report.html``, the interactive attention explorer of every run (:mod:`attnapps.explorer`)."""

    examples: int = opt(16, "test examples explained in report.html (0 = no report.html)", check=at_least(0))
    max_mb: float = opt(4.0, "size budget of report.html in MB: examples past it are left out", check=positive)


@dataclass
class RunConfig:
    """Root of every run's config: task-independent keys. Tasks subclass it."""

    task_name: str = MISSING
    seed: int = opt(1234, "seed of weights, sampling and data order")
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)


def job_dirname(overrides: str, limit: int = 120) -> str:
    """A sweep job's folder name from its ``key=value,...`` overrides: ``/`` (a path's) becomes ``_``, and a
    name past ``limit`` characters (file systems stop at 255; a search passes every key on the command line)
    is cut, with a hash of the whole so that two jobs never share a folder.

    >>> job_dirname("data.path=/tmp/x,model.attention=dot")
    'data.path=_tmp_x,model.attention=dot'
    >>> len(job_dirname("trainer.lr=0.001," * 40)), job_dirname("a=1," * 60)[:12]
    (120, 'a=1,a=1,a=1,')
    """
    import hashlib

    name = str(overrides).replace("/", "_")
    if len(name) <= limit:
        return name
    return name[: limit - 11] + "-" + hashlib.sha1(name.encode()).hexdigest()[:10]


OmegaConf.register_new_resolver("attnapps_dirname", job_dirname, replace=True)


def hydra_defaults(default_task: str | None) -> dict:
    """The primary config: which task by default (the registered one marked ``Task.default``), and where
    runs go."""
    return {
        "defaults": ([{"task": default_task}] if default_task else []) + ["_self_"],
        "hydra": {
            "run": {"dir": "runs/${task_name}/${now:%Y-%m-%d_%H-%M-%S}"},
            "sweep": {"dir": "multirun/${task_name}/${now:%Y-%m-%d_%H-%M-%S}",
                      "subdir": "${hydra.job.num}_${attnapps_dirname:${hydra.job.override_dirname}}"},
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
