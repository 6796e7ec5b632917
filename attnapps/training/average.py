"""Checkpoint averaging (``trainer.keep_last``, ``trainer.average_last``, ``python -m attnapps.average``).

The uniform mean of the weights of the last N checkpoints of a run, as fairseq's
``scripts/average_checkpoints.py`` and OpenNMT-py's ``average_models`` make it: each floating-point tensor
averaged in fp32 and cast back, every other entry (integer buffers) taken from the newest. It is the
average :class:`torch.optim.swa_utils.AveragedModel` keeps while training, taken here over files after
the fact (the trainer's own running average is :mod:`attnapps.training.swa`).

``checkpoints/step_<update>.pt``: a kept checkpoint, in ``best.pt``'s form (model, config, task state),
one per evaluation while ``trainer.keep_last`` > 0, the newest N kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from attnapps.errors import AttnappsError

KEPT = re.compile(r"step_(\d+)\.pt")


def kept(checkpoint_dir: Path) -> list[Path]:
    """The kept checkpoints of a run's ``checkpoints/`` folder, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(checkpoint_dir).glob("step_*.pt") if (m := KEPT.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def kept_path(checkpoint_dir: Path, step: int) -> Path:
    return Path(checkpoint_dir) / f"step_{step:08d}.pt"


def prune(checkpoint_dir: Path, keep: int, after: int | None = None) -> None:
    """Delete all but the newest ``keep`` kept checkpoints (and, with ``after``, any of a later update:
    written by a run killed after the checkpoint it is resumed from)."""
    files = kept(checkpoint_dir)
    if after is not None:
        for p in files:
            if int(KEPT.fullmatch(p.name).group(1)) > after:
                p.unlink(missing_ok=True)
        files = kept(checkpoint_dir)
    for p in files[: max(0, len(files) - keep)]:
        p.unlink(missing_ok=True)


def average_states(states: list[dict]) -> dict:
    """The mean of ``model`` state dicts (floating-point entries in fp32, cast back; others: the newest).

    >>> a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    >>> b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    >>> avg = average_states([a, b])
    >>> avg["w"].tolist(), int(avg["n"])
    ([2.0, 4.0], 5)
    """
    if not states:
        raise AttnappsError("nothing to average")
    keys = list(states[-1])
    for s in states[:-1]:
        if list(s) != keys or any(s[k].shape != states[-1][k].shape for k in keys):
            raise AttnappsError("the checkpoints to average do not hold the same weights (another model config?)")
    out = {}
    for k in keys:
        newest = states[-1][k]
        if newest.is_floating_point():
            total = torch.zeros_like(newest, dtype=torch.float32)
            for s in states:
                total += s[k].float()
            out[k] = (total / len(states)).to(newest.dtype)
        else:
            out[k] = newest.clone()
    return out


def average_last(checkpoint_dir: Path, n: int) -> dict:
    """A checkpoint (``best.pt``'s form, from the newest file) whose weights average the last ``n`` kept
    checkpoints; ``averaged_steps`` lists their updates."""
    from attnapps.training.checkpoint import load_checkpoint

    files = kept(checkpoint_dir)
    if len(files) < n:
        raise AttnappsError(f"{checkpoint_dir}: {len(files)} kept checkpoints (step_*.pt), {n} asked for: train "
                            f"with trainer.keep_last={n} (or more)")
    states = [load_checkpoint(p) for p in files[-n:]]
    avg = dict(states[-1])
    avg["model"] = average_states([s["model"] for s in states])
    avg["averaged_steps"] = [int(s.get("step", -1)) for s in states]
    avg.pop("metrics", None)
    return avg
