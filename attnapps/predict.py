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


def load_run(run: str | Path, task_name: str | None = None, device: str = "cpu"):
    """``(task, model)`` rebuilt from a run directory (or a checkpoint file), in eval mode."""
    import torch

    from attnapps.task import get_task
    from attnapps.training.checkpoint import load_checkpoint

    run = Path(run)
    ckpt_path = run if run.is_file() else run / "checkpoints" / "best.pt"
    if not run.exists():
        raise AttnappsError(f"run={run}: no such run directory")
    if not ckpt_path.is_file():
        raise AttnappsError(f"run={run}: no checkpoints/best.pt (is it a finished attnapps run directory?)")
    state = load_checkpoint(ckpt_path)
    saved_task = state.get("task")
    if task_name and saved_task != task_name:
        raise AttnappsError(f"run={run} was trained for task={saved_task}, not task={task_name}")
    task_cls = get_task(saved_task)
    cfg = OmegaConf.merge(OmegaConf.structured(task_cls.config_class), state["config"])
    task = task_cls(cfg)
    task._device = torch.device(device)
    task.load_state_dict(state["task_state"])
    model = task.build_model()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise AttnappsError(f"{ckpt_path}: weights do not fit the saved config ({str(e).splitlines()[0]})") from e
    return task, model.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        if "run" not in args:
            raise ConfigError("missing run=RUN_DIR (usage: python -m attnapps.predict task=NAME run=DIR ...)")
        run, task_name = args.pop("run"), args.pop("task", None)
        device = args.pop("device", "cpu")
        task, model = load_run(run, task_name, device)
        if task.predict_config_class is None:
            raise ConfigError(f"task {task.name} has no predict options")
        options = OmegaConf.structured(task.predict_config_class)
        for k, v in args.items():
            if k not in options:
                raise ConfigError(f"unknown predict option '{k}' for task={task.name}; "
                                  f"known: {', '.join(options.keys())}")
            try:
                setattr(options, k, v)  # typed: "5" -> 5 for an int option, "abc" rejected
            except Exception as e:
                raise ConfigError(f"bad value for predict option '{k}': {str(e).splitlines()[0]}") from None
        import torch

        with torch.no_grad():
            task.predict(model, options)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
