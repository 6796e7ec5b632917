"""The Task plugin interface and its registry.

A task turns the shared machinery (attention core, trainer, decoding, metrics, report) into one
application. Subclass :class:`Task`, decorate it with :func:`register_task`, and expose the module
through the ``attnapps.tasks`` entry-point group (our four tasks do this in ``pyproject.toml``) or
the ``ATTNAPPS_TASKS=module[,module]`` environment variable. The core never imports a task by name.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from attnapps.config import opt
from attnapps.errors import ConfigError

_TASKS: dict[str, type["Task"]] = {}


@dataclass
class Evaluation:
    """What ``Task.evaluate`` returns: the split's metrics and (for the final evaluation) whatever the
    report needs of it -- decoded outputs, predictions, attention. The trainer hands the final
    evaluations' outputs to ``Task.report``; nothing is left behind on the task."""

    metrics: dict[str, float]
    outputs: Any = None


class Task:
    """One application of attention. The trainer builds it as ``Task(cfg, device=, budget=)`` and calls,
    in order:

    ``build_data()`` -> ``build_model()`` -> per batch ``loss(model, batch)`` -> ``evaluate(model, split)``.
    ``state`` (a ``state_class``: tokenizer, label names) is what besides the weights a saved model needs,
    fitted once on the training data (:meth:`fitted`) or given by a checkpoint; it is stored in every
    checkpoint. That is the whole required contract; reports,
    explained outputs (``report.html``, ``attnapps.serve``, ``attnapps.predict``) and diagnostics are
    the optional components below (:class:`Reporter`, :class:`Explainer`, :class:`Diagnoser`). A task
    may also define ``predict(model, options)`` itself (options: ``predict_config_class``).
    """

    name: ClassVar[str]
    default: ClassVar[bool] = False  # the task `attnapps.run` trains when no task= is given (one task says so)
    config_class: ClassVar[type]  # a dataclass subclassing attnapps.config.RunConfig
    # what a trained model needs besides its weights (tokenizers, labels, vocabulary): a dataclass with
    # to_dict() and a classmethod from_dict(dict); saved in every checkpoint (None: the task fits nothing)
    state_class: ClassVar[type | None] = None
    aliases: ClassVar[dict[str, str]] = {}  # short command-line names: {"tokenizer": "tokenizer.kind"}
    list_keys: ClassVar[tuple[str, ...]] = ()  # string keys holding a comma-separated list (quoted for Hydra)
    introduced: ClassVar[dict[str, Any]] = {}  # keys added with a new default: {key: the value before it}
    renamed: ClassVar[dict[str, str]] = {}  # old key -> new key, accepted with a deprecation line for one release
    primary_metric: ClassVar[str] = "loss"  # key of evaluate()'s result: what the run is judged by
    higher_is_better: ClassVar[bool] = False
    count_unit: ClassVar[str] = "examples"  # what loss() counts: throughput is train.<unit>_per_sec
    evaluates_loss: ClassVar[bool] = False  # True: evaluate() returns "loss" too (one pass; the trainer does not
    # run the split again through loss() for valid.loss / test.loss)
    # per study preset (quick, full): this task's own keys, over the preset's (attnapps.study)
    study_presets: ClassVar[dict[str, list[str]]] = {}
    secondary_metrics: ClassVar[tuple[str, ...]] = ()  # test metrics the study shows beside the primary one
    study_figure: ClassVar[str] = ""  # the attention figure under plots/ the study shows per variant
    # further uses of attention the study runs as their own rows, as ``task+use``: {use: its overrides}
    study_uses: ClassVar[dict[str, list[str]]] = {}
    # What the task adds to a run's outputs (attnapps.outputs: pattern -> meaning, "*" = every run has it): the
    # reference pages list them, and a test fails on a key or file that nothing documents
    metric_keys: ClassVar[dict[str, str]] = {}
    run_files: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg, device: str | torch.device | None = None, budget: Callable[[], float] | None = None):
        self.cfg = cfg
        self.device = torch.device(device if device is not None else "cpu")
        self._budget = budget  # how far training is through its budget, 0..1 (the trainer's clock)
        self.datasets: dict[str, Sequence] = {}
        self.state = None  # the fitted state (a state_class): a checkpoint's (resume, predict), or fitted by build_data
        self.resolve_config(cfg)

    @classmethod
    def resolve_config(cls, cfg) -> None:
        """Fill the config's "chosen for you" values that depend on nothing but the config (e.g. an
        architecture's width), before ``config.yaml`` is written; values that depend on the data are
        resolved in ``build_data``."""

    # -- config ---------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        """Reject a bad config before any data is read (raise ``ConfigError`` naming the key): every
        field's own rule (``opt(..., check=...)``, collected by :func:`attnapps.config.field_rules`), then
        keys set for an architecture that does not use them; override to add checks across keys (and call
        ``super().check_config(cfg)``)."""
        from dataclasses import fields

        from attnapps.config import check_arch_keys, check_rules, field_rules

        check_rules(cfg, field_rules(cls.config_class))
        model = next((f.default_factory for f in fields(cls.config_class) if f.name == "model"), None)
        if hasattr(model, "archs"):  # a per-architecture model section (attnapps.config.model_section)
            check_arch_keys(cfg.model, model)

    @classmethod
    def upgrade_config(cls, saved: dict) -> dict:
        """A saved config (``config.yaml``, a checkpoint's) with each key the task renamed since
        (``renamed``) moved to its new name, and each key added since with a new default (``introduced``)
        set to the value that reproduces what the run was trained as, so runs of previous releases load."""
        import copy

        def section(dotted: str):  # (the dict holding the key, its last name); the dict is None if absent
            *path, last = dotted.split(".")
            node = saved
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            return (node if isinstance(node, dict) else None), last

        saved = copy.deepcopy(saved)
        for key, value in cls.introduced.items():
            node, last = section(key)
            if node is not None and last not in node:
                node[last] = value
        for old, new in cls.renamed.items():
            node, last = section(old)
            if node is not None and last in node:
                value = node.pop(last)
                *new_path, new_last = new.split(".")
                target = saved
                for part in new_path:
                    target = target.setdefault(part, {})
                target[new_last] = value
        return saved

    # -- data -----------------------------------------------------------------------------------
    def load_data(self) -> dict[str, Sequence]:
        """``build_data()``, kept as ``self.datasets`` (what :meth:`batches` reads). With ``data.hf=`` set,
        the dataset is exported into the task's layout first (:mod:`attnapps.data.hub`, :meth:`write_hub`)
        and ``data.path`` points at the export."""
        from attnapps.data import hub

        self.hub_info = hub.apply(self.cfg, self)
        self.datasets = self.build_data()
        return self.datasets

    def write_hub(self, datasets: dict, columns: dict[str, str], folder: Path) -> dict:
        """Write a Hugging Face dataset (``data.hf=``) into ``folder`` in this task's file layout and return
        the ``data.*`` config values that read it. ``datasets``: ``{"train", "valid", "test"}`` ->
        ``datasets.Dataset``; ``columns``: the user's ``data.hf_columns`` (our name -> their column); iterate
        rows with :func:`attnapps.data.hub.rows` (memory stays flat)."""
        raise ConfigError(f"task={self.name} does not read data.hf= datasets; give data.path=")

    def build_data(self) -> dict[str, Sequence]:
        """Read the data, fit the tokenizer on train; return ``{"train", "valid", "test"}`` datasets."""
        raise NotImplementedError

    def lengths(self, split: str) -> list[int] | None:
        """Per-example lengths (tokens) for length-bucketed batching; None = no bucketing."""
        return None

    def collate(self, examples: list) -> dict[str, Tensor]:
        """Stack examples into a batch: a dict of tensors (the trainer moves them to the device)."""
        raise NotImplementedError

    def train_collate(self, examples: list) -> dict[str, Tensor]:
        """The training batches' collate (default :meth:`collate`): where a task augments its training
        data, e.g. with sampled segmentations. A deterministic function of ``examples`` (exact resume)."""
        return self.collate(examples)

    # -- model ----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return ``(sum of per-item losses, number of items)`` for the batch.

        Returning the sum (not the mean) lets the trainer normalise by the count over all
        accumulation steps and all processes, so accumulation and DDP give the same update as one
        big batch.
        """
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: str, final: bool = False) -> Evaluation:
        """Task metrics on a split (``valid`` during training, ``valid``/``test`` at the end), with the
        outputs the report needs when ``final``. ``final=False`` may use a cheaper subset. The trainer
        adds ``loss`` itself."""
        return Evaluation({})

    def fitted(self, fit: Callable[[], Any]) -> Any:
        """``self.state``: the one a checkpoint gave (resume, predict), else ``fit()`` -- fitted on the
        training split by ``build_data`` -- kept for the checkpoints. The one place a task fits its state::

            state = self.fitted(lambda: MyState(tokenizer=fit_tokenizer(...train...)))
        """
        if self.state is None:
            self.state = fit()
        return self.state

    # the run's folder while the trainer runs the final evaluation (rank 0): outputs are written there as they come
    outputs_dir: Path | None = None

    def output_lines(self, name: str) -> "OutputLines":
        """The final evaluation's file ``name`` in the run folder, written window by window as decoding
        goes (:class:`OutputLines`) -- a long evaluation shows its progress and a stopped one keeps what
        it had decoded; outside the final evaluation (no :attr:`outputs_dir`) it writes nothing."""
        return OutputLines(self.outputs_dir / name if self.outputs_dir is not None and name else None)

    prepared_info: dict | None = None  # how build_data found its prepared store (attnapps.data.prepared.open_or_build)
    hub_info: dict | None = None  # with data.hf=: the export of the dataset (attnapps.data.hub.apply)
    hub_keys: ClassVar[tuple[str, ...]] = ()  # config keys write_hub reads: part of the export's key
    # the state_dict() keys the prepared encoding depends on: a checkpoint whose values differ gets its own store
    encoding_state: ClassVar[tuple[str, ...]] = ("tokenizer",)

    def prepared(self, files: Sequence, options: dict, build: Callable, cache_dir: str = ""):
        """The data prepared once (:mod:`attnapps.data.prepared`): the store of these data ``files`` and
        ``options`` (whatever else changes what is stored) under ``<cache_dir>/prepared/``, built by
        ``build(writer)`` when missing -- it reads the files, fits the state (:meth:`fitted`) and writes the
        encoded splits -- and opened read-only. After it ``self.state`` is the store's, unless a checkpoint
        gave one (resume, predict): then the store is one encoded with the checkpoint's ``encoding_state``.
        ``self.prepared_info`` says whether it was a cache hit and how long preparing took (the report)."""
        from attnapps.data import prepared
        from attnapps.data.files import cache_root

        root = cache_root(cache_dir) / "prepared"
        key, given = prepared.store_key(self.name, files, options), self.state

        def encoding(state: dict | None) -> str:
            return prepared.fingerprint({k: v for k, v in (state or {}).items() if k in self.encoding_state})

        if given is not None:
            mine, plain = encoding(given.to_dict()), root / key
            if not ((plain / "manifest.json").is_file() and encoding(prepared.Store(plain).state()) == mine):
                key = f"{key}-{mine[:12]}"

        def write(writer):
            build(writer)
            writer.state(self.state_dict())

        store, self.prepared_info = prepared.open_or_build(root, key, write)
        if self.state is None and self.state_class is not None:  # a cache hit: the state fitted when it was built
            self.state = self.state_class.from_dict(store.state())
        return store

    def state_dict(self) -> dict[str, Any]:
        """The fitted state as plain values (``state_class.to_dict``): what checkpoints store."""
        return self.state.to_dict() if self.state is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a checkpoint's state (``state_class.from_dict``); ``build_data`` then reads the data with
        it instead of fitting a new one."""
        self.state = self.state_class.from_dict(state) if self.state_class is not None else None

    @property
    def selection_metric(self) -> str:
        """The key of ``evaluate()``'s result that early stopping and the best checkpoint follow: the
        primary metric, unless the task says otherwise (classification voting with a TF-IDF companion
        follows the model's own, so that the vote cannot end the model's training early)."""
        return self.primary_metric

    def budget_fraction(self) -> float:
        """How far training is through its time/step budget (0..1), from the trainer's clock (0 outside
        training), so ``loss`` may, e.g., switch objectives late in training."""
        return self._budget() if self._budget is not None else 0.0

    def training_phase(self) -> int:
        """Which phase of training the loss is in (0 = the only one). When it changes (e.g. a switch to
        self-critical training late in the budget) the trainer restarts its early-stopping count, so a
        new phase gets its own ``trainer.patience`` evaluations to beat the best model so far."""
        return 0

    # -- helpers --------------------------------------------------------------------------------
    def batches(self, split: str, batch_size: int = 0, indices: Sequence[int] | None = None):
        """Batches of a split in dataset order (or of ``indices``), collated and on the device."""
        from attnapps.data.batching import to_device

        ds = self.datasets[split]
        order = list(range(len(ds))) if indices is None else list(indices)
        size = batch_size or self.cfg.trainer.batch_size
        for start in range(0, len(order), size):
            yield to_device(self.collate([ds[i] for i in order[start:start + size]]), self.device)


class OutputLines:
    """Lines appended to a file and flushed at each :meth:`write` (a context manager); ``path`` None
    writes nothing. ``written`` says whether the file holds the lines (so a report need not write them)."""

    def __init__(self, path: Path | None):
        self.path, self.file, self.count = path, None, 0

    def __enter__(self) -> "OutputLines":
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, lines: Sequence[str]) -> None:
        self.count += len(lines)
        if self.file is not None:
            self.file.write("".join(f"{line}\n" for line in lines))
            self.file.flush()

    @property
    def written(self) -> bool:
        return self.path is not None

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


EVAL_WINDOW = 8192  # examples a final evaluation decodes at a time (sorted by length within one)


def windows(n: int, size: int | None = None):
    """``range`` s of at most ``size`` (:data:`EVAL_WINDOW`) covering ``0..n``: a large split evaluated piece
    by piece (its inputs read from the prepared store per piece, its outputs written as each is decoded).

    >>> [list(r) for r in windows(5, size=2)]
    [[0, 1], [2, 3], [4]]
    """
    size = size or EVAL_WINDOW
    return (range(start, min(n, start + size)) for start in range(0, n, size))


# ------------------------------------------------------------------------------- optional components
# A task adds what it offers beyond data -> model -> loss -> evaluate by subclassing these as well
# (``class MyTask(Task, Reporter, Explainer)``); the core asks ``isinstance(task, Explainer)`` and so on.


class Reporter:
    """Adds to a run's outputs: ``report.md`` sections and figures, the trivial baseline beside the
    metrics, run-level numbers."""

    def report(self, model: nn.Module, run_dir: Path, results: dict[str, Any]) -> list[str]:
        """Markdown sections for ``report.md``; figures go to ``run_dir/plots``. ``results``: split ->
        the final evaluation's ``Evaluation.outputs``, and ``"run"`` -> the run's final metrics (those of
        ``metrics.json``, ``extra_metrics`` included), ``"training"`` -> ``{"stop": sentence, "data":
        sentence}`` (how much of the budget training used and why it ended; whether the prepared data was
        a cache hit)."""
        return []

    def trivial_baseline(self, split: str) -> dict[str, float]:
        """The metrics on ``split`` of a predictor that learns nothing about the inputs -- the majority
        class, the source copied, a unigram model: ``{metric: value}`` with at least the primary metric,
        written to ``metrics.json`` as ``trivial.<split>.<metric>``. A run not beyond it did not learn
        (the study says so instead of comparing it). ``{}``: the task has none."""
        return {}

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """Run-level numbers for ``metrics.json`` besides the split metrics (e.g. extraction or
        generation speed), called once with the final (best) model."""
        return {}


class Diagnoser:
    """Explains outputs for the attention diagnostics (:mod:`attnapps.diagnostics`): ``diag.*`` in
    ``metrics.json`` and the report."""

    diag_decision: ClassVar[bool] = False  # the explained output is a decision: erasure reports flip rates

    def probes(self, model: nn.Module, indices: list[int]) -> list:
        """:class:`attnapps.diagnostics.Probe` s explaining the outputs on test examples ``indices``;
        none = no ``diag.*`` for this task."""
        return []

    def diag_extra(self, model: nn.Module) -> dict[str, float]:
        """Further ``diag.*`` numbers (e.g. translation's alignment error rate against gold alignments)."""
        return {}


@dataclass
class PredictConfig:
    """``attnapps.predict``'s options for an :class:`Explainer` that declares none of its own."""

    input: str = opt("-", "file with one input per line, or - for stdin")
    output: str = opt("-", "file for the outputs, or - for stdout")


class Explainer:
    """Explains outputs on new inputs and on test examples: what ``attnapps.serve`` answers, the examples
    of ``report.html`` and (unless the task has its own ``predict``) what ``attnapps.predict`` prints."""

    predict_config_class: ClassVar[type] = PredictConfig  # attnapps.predict's key=value options (a dataclass)
    serve_input: ClassVar[str] = "text"  # what a served request gives: "text" (strings) or "image" (RGB PIL images)
    serve_options: ClassVar[tuple[str, ...]] = ()  # the predict options a served request may set
    predict_defaults: ClassVar[str] = ""  # a config section whose keys predict options share default them ("decode")
    serve_limits: ClassVar[dict[str, str]] = {}  # option -> the attnapps.serve key capping it ({"beam": "max_beam"})
    infer_batches: ClassVar[bool] = True  # infer() runs its inputs as one batch: the server micro-batches requests

    def infer(self, model: nn.Module, inputs: list, options) -> list[dict]:
        """New inputs (texts, or RGB PIL images when ``serve_input == "image"``) -> one explained output
        each, in :mod:`attnapps.explorer`'s format with ``text`` = the output: what ``attnapps.serve``
        returns. ``options``: the task's predict options (``predict_config_class``)."""
        raise NotImplementedError(f"task {self.name} cannot explain new inputs")

    def count_tokens(self, text: str) -> int:
        """Tokens of an input text, for the server's ``max_tokens`` limit (the task's tokenizer)."""
        return len(text.split())

    def explore(self, model: nn.Module, results: dict[str, Any], n: int) -> list[dict]:
        """``report.html``'s examples: up to ``n`` test examples explained as :meth:`infer` does, with
        what the test set knows besides (gold label, references). ``results`` as for :meth:`report`."""
        return []

    def predict(self, model: nn.Module, options) -> None:
        """``attnapps.predict``: each line of ``options.input`` -> its output's text, one line each."""
        from attnapps.data.files import read_input, write_output

        lines = read_input(options.input).splitlines()
        outputs = [o["text"] for start in range(0, len(lines), 32)
                   for o in self.infer(model, lines[start:start + 32], options)]
        write_output(options.output, outputs)


def register_task(name: str):
    """Class decorator: register a :class:`Task` under ``name`` and its config as ``task=<name>``."""

    def wrap(cls):
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group="task", name=name, node=cls.config_class, package="_global_")
        return cls

    return wrap


_loaded = False


def load_plugins() -> None:
    """Import the task modules: entry points of group ``attnapps.tasks`` + ``$ATTNAPPS_TASKS``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group="attnapps.tasks"):
        ep.load()
    for module in filter(None, os.environ.get("ATTNAPPS_TASKS", "").split(",")):
        importlib.import_module(module.strip())


def list_tasks() -> list[str]:
    load_plugins()
    return sorted(_TASKS)


def default_task() -> str | None:
    """The registered task that says it is the default (``Task.default``), else the first by name."""
    names = list_tasks()
    marked = [n for n in names if _TASKS[n].default]
    return (marked or names or [None])[0]


def get_task(name: str) -> type[Task]:
    load_plugins()
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(sorted(_TASKS)) or "none registered"
        raise ConfigError(f"unknown task {name!r}; choose one of: {known}") from None
