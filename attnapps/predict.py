"""``python -m attnapps.predict task=NAME run=RUN_DIR [key=value ...]``: use a trained run.

Rebuilds the task from the run's saved ``config.yaml`` and checkpoint (tokenizer and label names are
inside the checkpoint), loads the best weights and calls the task's ``predict`` with the remaining
``key=value`` options (each task documents them; an unknown one is rejected by name).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from attnapps.errors import AttnappsError, ConfigError


def parse_args(argv: list[str]) -> dict[str, str]:
    args = {}
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"expected key=value, got {a!r} (usage: python -m attnapps.predict task=NAME run=DIR ...)")
        k, v = a.split("=", 1)
        args[k.strip()] = v
    return args


def read_saved(run: str | Path) -> tuple[dict, Path]:
    """``(state, where)``: the saved model of a run directory (``checkpoints/best.pt``), of a checkpoint
    file, or of a folder ``python -m attnapps.export format=safetensors`` wrote (no pickle)."""
    from attnapps.export.weights import META, is_export, read_export
    from attnapps.training.checkpoint import load_checkpoint

    run = Path(run)
    if not run.exists():
        raise AttnappsError(f"run={run}: no such run directory")
    if is_export(run):
        return read_export(run), run / META
    ckpt_path = run if run.is_file() else run / "checkpoints" / "best.pt"
    if not ckpt_path.is_file():
        raise AttnappsError(f"run={run}: no checkpoints/best.pt (is it a finished attnapps run directory "
                            "or an exported model?)")
    return load_checkpoint(ckpt_path), ckpt_path


def load_run(run: str | Path, task_name: str | None = None, device: str = "cpu"):
    """``(task, model)`` rebuilt from a run directory, a checkpoint file or an exported folder
    (:mod:`attnapps.export`), in eval mode."""
    state, ckpt_path = read_saved(run)
    return from_saved(state, ckpt_path, task_name, device)


def check_saved(state, where: Path) -> None:
    if not isinstance(state, dict) or not {"task", "model", "config", "task_state"} <= set(state):
        raise AttnappsError(f"{where}: not an attnapps checkpoint (no task, model, config and task_state)")


def from_saved(state: dict, ckpt_path: Path, task_name: str | None = None, device: str = "cpu"):
    """``(task, model)`` from what :func:`read_saved` read (``ckpt_path``: where, for messages)."""
    from attnapps.task import get_task

    check_saved(state, ckpt_path)
    run = ckpt_path.parent.parent if ckpt_path.name == "best.pt" else ckpt_path.parent
    saved_task = state.get("task")
    if task_name and saved_task != task_name:
        raise AttnappsError(f"run={run} was trained for task={saved_task}, not task={task_name}")
    task_cls = get_task(saved_task)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(task_cls.config_class), task_cls.upgrade_config(state["config"]))
    except Exception as e:  # a key or value this version does not know
        raise AttnappsError(f"{ckpt_path}: its config does not fit this version of task {saved_task} "
                            f"({str(e).splitlines()[0]})") from None
    task = task_cls(cfg, device=device)
    try:
        task.load_state_dict(state["task_state"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AttnappsError(f"{ckpt_path}: damaged task state ({type(e).__name__}: {e})") from None
    if state["model"] is None:  # an ONNX export: its graphs in ONNX Runtime
        from attnapps.export.runtime import OnnxModel

        return task, OnnxModel(ckpt_path.parent).to(device)
    model = task.build_model()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise AttnappsError(f"{ckpt_path}: weights do not fit the saved config ({str(e).splitlines()[0]})") from e
    return task, model.to(device).eval()


def predict_options(task, given: dict, allowed=None, what: str = "predict option"):
    """The task's predict options (``predict_config_class``; an option its ``predict_defaults`` section of the
    run's config also has starts at the run's value) with the ``given`` values: typed ("5" -> 5
    for an int option, "abc" rejected) and checked by their fields' rules; a name outside ``allowed``
    (default: every option) or a bad value raises :class:`ConfigError` naming it as ``what``."""
    from attnapps.config import check_rules, field_rules

    cls = getattr(task, "predict_config_class", None)
    options = OmegaConf.structured(cls) if cls is not None else OmegaConf.create({})
    name = getattr(task, "predict_defaults", "")
    run_section = OmegaConf.select(task.cfg, name, default=None) if name else None
    for k in options.keys() if run_section is not None else ():  # the run's own settings, e.g. decode.beam
        if k in run_section:
            options[k] = run_section[k]
    known = list(options.keys()) if allowed is None else list(allowed)
    for k, v in given.items():
        if k not in known:
            raise ConfigError(f"unknown {what} '{k}' for task={task.name}; known: {', '.join(known) or 'none'}")
        try:
            setattr(options, k, v)
        except Exception as e:
            raise ConfigError(f"bad value for {what} '{k}': {str(e).splitlines()[0]}") from None
    try:
        check_rules(options, field_rules(cls))
    except ConfigError as e:
        raise ConfigError(str(e).replace("config key", what)) from None
    return options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        if "run" not in args:
            raise ConfigError("missing run=RUN_DIR (usage: python -m attnapps.predict task=NAME run=DIR ...)")
        run, task_name = args.pop("run"), args.pop("task", None)
        device = args.pop("device", "cpu")
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
            raise ConfigError(f"device={device!r}: choose cpu, cuda or cuda:N")
        task, model = load_run(run, task_name, device)
        if not hasattr(task, "predict"):
            raise ConfigError(f"task {task.name} has no predict (it is no attnapps.task.Explainer and defines none)")
        options = predict_options(task, args)
        import torch

        with torch.no_grad():
            task.predict(model, options)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
