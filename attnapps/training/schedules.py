"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay, or inverse sqrt."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def lr_factor(step: int, schedule: str, warmup: int, total: int, min_ratio: float = 0.0,
              fraction: float | None = None) -> float:
    """Multiplier of the base LR for update ``step`` (0-based) of ``total``.

    ``fraction`` (0..1), when given, replaces ``step / total`` as the decay progress: a run under a
    wall-clock budget (``trainer.max_minutes``) decays over its time budget.

    * warmup: ``(step + 1) / warmup`` for ``step < warmup``
    * ``constant``: 1; ``linear``/``cosine``: decay from 1 to ``min_ratio`` at ``total``;
      ``inverse_sqrt``: ``sqrt(warmup / (step + 1))`` (Vaswani et al. 2017).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup, 1) / (step + 1))
    progress = min(1.0, (step - warmup) / max(1, total - warmup) if fraction is None else fraction)
    if schedule == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
