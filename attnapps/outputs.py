"""What a run leaves behind: its directory's files and its ``metrics.json`` keys, each with its meaning.

These tables are the contract scripts and checks rely on. The reference page "Run directory and
metrics.json" is generated from them (``docs/_ext/attnapps_docs.py``), and a test trains a tiny run of
each task and fails on any file or key that no pattern here (or in the task's ``Task.run_files`` /
``Task.metric_keys``) documents, and on any file or key marked always present that is missing.

A pattern is the name itself with ``<placeholder>`` parts: a placeholder matches one or more characters
other than ``.`` and ``/`` (one part of a key, one part of a path); ``<placeholder...>`` matches any rest
(a file name of another library's making). A leading ``*`` in the meaning marks
what every run has (for a key: every run of a task that declares it).
"""

from __future__ import annotations

import re
from functools import lru_cache

RUN_FILES: dict[str, str] = {
    "config.yaml": "* the resolved config, written once the task has chosen its automatic values from the data "
                   "(`model.arch=auto` saved as the architecture chosen): the config the model was built from",
    "metrics.json": "* the final metrics, flat keys (the tables below)",
    "provenance.json": "* git commit and whether the tree had uncommitted changes, the command line, Python / torch / "
                       "library versions, CPU, threads, GPU, and the SHA-256 of every data file read",
    "log.csv": "* every logged value in long format: `step,epoch,elapsed_s,key,value`",
    "report.md": "* the report: config summary, final metrics beside the baselines, training, diagnostics, the "
                 "task's examples and figures, provenance",
    "report.html": "* the interactive explorer (`explorer.examples=` test examples, `explorer.max_mb=` size budget)",
    "plots/learning_curves.png": "* loss and the primary metric over updates",
    "checkpoints/last.pt": "* everything a resume needs: model, optimizer, scheduler, RNG states of every rank, the "
                           "data position, elapsed time, config, tokenizer, data files' SHA-256",
    "checkpoints/best.pt": "* the model kept (best on valid, or its weight average), with config and tokenizer: what "
                           "`attnapps.predict` and `attnapps.serve` load",
    "checkpoints/step_<update>.pt": "with `trainer.keep_last=N` (or `trainer.average_last=N`): the weights of each of "
                                    "the last N evaluations, in `best.pt`'s form (what checkpoint averaging reads)",
    "checkpoints/average.pt": "with `trainer.average_last=N`: the average of the last N kept weights (also `best.pt` "
                              "when it was better on valid)",
    "checkpoints/average_last<n>.pt": "`python -m attnapps.average run=DIR last=N`: the average of the last N kept "
                                      "weights, loadable by `attnapps.predict run=...pt`",
    "export/safetensors/<file>": "after `python -m attnapps.export run=DIR format=safetensors`: `model.safetensors` "
                                 "(the weights), `attnapps.json` (config and task state), `task_state.safetensors` "
                                 "(the task state's tensors, if any); loads without pickle",
    "export/onnx/<file>": "after `python -m attnapps.export run=DIR format=onnx`: the task's graphs (`*.onnx`), "
                          "`onnx.json` (which graph takes and gives what, the gap to PyTorch measured at export), "
                          "`attnapps.json` and `task_state.safetensors`",
    "tensorboard/<file...>": "with `trainer.loggers=[csv,tensorboard]`: the logged scalars and the final metrics",
    "wandb/<file...>": "with `trainer.loggers=[...,wandb]`: the W&B run (offline by default: `wandb sync` uploads it)",
    "mlruns/<file...>": "with `trainer.loggers=[...,mlflow]` and no `MLFLOW_TRACKING_URI`: the MLflow file store of "
                        "the run (params, metrics per update, final metrics, report and plots as artifacts)",
    ".hydra/<name>.yaml": "Hydra's own record of the command (`config.yaml`, `overrides.yaml`, `hydra.yaml`)",
    "run.log": "Hydra's log of the run (the command line's runs only)",
}

METRIC_KEYS: dict[str, str] = {
    "valid.loss": "* the loss on the valid split, with the kept model",
    "test.loss": "* the loss on the test split",
    "train.steps": "* updates made",
    "train.epochs": "* passes over the training data (fractional)",
    "train.wall_seconds": "* training wall time: loading, steps, logging, evaluation",
    "train.best_step": "* the update whose model was kept",
    "train.skipped_steps": "* updates skipped for a non-finite loss or gradient",
    "train.budget_used": "* the fraction of the time / step / epoch budget training used, 0..1",
    "train.first_update_seconds": "* from the start of the run (reading or opening the data, building the model) "
                                  "to the end of its first update",
    "time.setup_seconds": "* from the start of the run to its first training step (the data, the model)",
    "time.train_steps_seconds": "* training steps, their batches and their logging included",
    "time.eval_seconds": "* evaluation and checkpoints while training",
    "time.final_eval_seconds": "* the final evaluation of the kept model (valid and test in full, the report's "
                               "measurements), after the budget",
    "time.outside_steps_share": "* (setup + evaluation while training) / (setup + training wall time): the share "
                                "of the run up to its last step not spent in training steps",
    "train.stopped_early": "* 1 when early stopping ended training (or its first phase, before weight averaging)",
    "train.averaged_weights": "* how many weights the kept model averages (0: it is not an average)",
    "train.valid_before_average": "with weight averaging after early stopping: the best valid selection metric "
                                  "before averaging",
    "train.average_last": "with `trainer.average_last`: how many kept weights were averaged",
    "train.average_last.valid.<metric>": "with `trainer.average_last`: the average's valid selection metric",
    "train.average_kept": "with `trainer.average_last`: 1 when the average was better on valid and is the model kept",
    "train.<unit>_per_sec": "* training throughput in the task's unit (`Task.count_unit`: tokens, examples, captions)",
    "train.parameters": "* the model's parameter count",
    "train.peak_memory_mb": "* the process's peak resident memory (on CUDA the allocator's peak)",
    "data.cache_hit": "* 1 when the prepared store was opened, 0 when this run built it",
    "data.prepare_seconds": "* seconds spent preparing (reading, tokenizing, encoding) in this run",
    "trivial.test.<metric>": "* what a predictor that learns nothing about the input scores on test (each task's "
                             "page says which predictor): a run not beyond it did not learn",
}


def pattern_regex(pattern: str) -> re.Pattern:
    """``"test.<label>.f1"`` -> a regex where each ``<name>`` matches one part free of ``.`` and ``/``, and a
    ``<name...>`` anything."""
    pieces = re.split(r"(<[^<>]+>)", pattern)
    return re.compile("".join((".+" if p.endswith("...>") else "[^./]+") if p.startswith("<") and p.endswith(">")
                              else re.escape(p) for p in pieces) + r"\Z")


@lru_cache(maxsize=None)
def _compiled(pattern: str) -> re.Pattern:
    return pattern_regex(pattern)


def documented(name: str, patterns) -> str | None:
    """The first pattern of ``patterns`` that ``name`` matches, or None.

    >>> documented("test.pos.f1", ["test.loss", "<split>.<label>.<measure>"])
    '<split>.<label>.<measure>'
    >>> documented("test.a.b.f1", ["<split>.<label>.<measure>"]) is None   # a placeholder holds no dot
    True
    """
    return next((p for p in patterns if _compiled(p).match(name)), None)


def always(patterns: dict[str, str]) -> list[str]:
    """The patterns whose meaning says every run has them (a leading ``*``)."""
    return [p for p, meaning in patterns.items() if meaning.startswith("*")]


def task_metric_keys(task_cls) -> dict[str, str]:
    """Everything a task's ``metrics.json`` may hold: the shared keys, the diagnostics' and the task's own."""
    from attnapps.diagnostics import METRIC_KEYS as DIAG

    return {**METRIC_KEYS, **DIAG, **task_cls.metric_keys}


def task_run_files(task_cls) -> dict[str, str]:
    """Everything a task's run directory may hold."""
    return {**RUN_FILES, **task_cls.run_files}


def undocumented(names, patterns) -> list[str]:
    """The names no pattern documents."""
    return [n for n in names if documented(n, patterns) is None]


def missing(names, patterns: dict[str, str]) -> list[str]:
    """The always-present patterns no name matches."""
    names = list(names)
    return [p for p in always(patterns) if not any(_compiled(p).match(n) for n in names)]
