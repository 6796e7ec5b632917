"""Where training stands (:class:`Progress`, saved in every checkpoint) and the one clock that budgets
it (:class:`Budget`: ``trainer.max_minutes``, ``max_steps``, ``max_epochs``).

The clock counts every wall second of training -- loading, host-to-device copies, steps, logging,
evaluation, checkpoints -- in ``elapsed`` (what ``trainer.max_minutes`` budgets, all segments of a
resumed run together) and the training share alone in ``train_seconds`` (for throughput).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from attnapps.training import distributed as dist


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of the current epoch already consumed
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    elapsed: float = 0.0  # wall seconds of training, all of it (see the module docstring)
    train_seconds: float = 0.0  # the same without evaluation and checkpoints (for throughput)
    items: float = 0.0  # loss items (tokens/examples) trained on
    skipped_steps: int = 0  # bf16: updates skipped because the loss or the gradient norm was not finite
    phase: int = 0  # the task's training phase at the last evaluation (Task.training_phase)
    stop: str = ""  # why training ended: patience | time | steps | epochs ("" while it runs)
    averaging: float = 0.0  # > 0 after early stopping, while weights are averaged: the constant LR factor
    early_stop_step: int = 0  # the update at which early stopping ended the first phase
    best_before_average: float | None = None  # valid selection metric of the best model before averaging
    best_averaged: int = 0  # weights averaged in the best model (0 = the best model is not an average)

    def state_dict(self) -> dict:
        return vars(self).copy()

    def load_state_dict(self, state: dict) -> None:
        """In place: the budget and the trainer hold this object."""
        for k, v in state.items():
            setattr(self, k, v)


class Budget:
    """The run's clock and its limits. ``total_steps`` is set once the epoch length is known."""

    def __init__(self, trainer_cfg, progress: Progress, synced: bool = False):
        self.tc, self.progress, self.synced = trainer_cfg, progress, synced
        self.total_steps = 0
        self._mark = time.perf_counter()

    def start(self) -> None:
        self._mark = time.perf_counter()

    def tick(self, train: bool) -> float:
        """Add the wall time since the last tick to ``elapsed`` (and to ``train_seconds`` when ``train``)."""
        now = time.perf_counter()
        dt, self._mark = now - self._mark, now
        self.progress.elapsed += dt
        if train:
            self.progress.train_seconds += dt
        return dt

    @property
    def limited(self) -> bool:
        """Whether any limit is set (time, steps or epochs)."""
        return self.tc.max_minutes > 0 or bool(self.tc.max_steps or self.tc.max_epochs)

    @property
    def seconds(self) -> float:
        return 60 * self.tc.max_minutes

    def time_up(self) -> bool:
        if self.tc.max_minutes <= 0:
            return False
        if self.synced:  # one clock for all ranks (rank 0's): the same stop and the same time-based LR
            self.progress.elapsed = float(dist.broadcast_tensor(torch.tensor(self.progress.elapsed, dtype=torch.float64)))
        return self.progress.elapsed >= self.seconds

    def done(self) -> bool:
        return bool(self.reason())

    def reason(self) -> str:
        """Which limit is reached: ``steps``, ``epochs`` or ``time`` ("" if none is)."""
        p, tc = self.progress, self.tc
        if tc.max_steps and p.step >= tc.max_steps:
            return "steps"
        if tc.max_epochs and p.epoch >= tc.max_epochs:
            return "epochs"
        return "time" if self.time_up() else ""

    def fraction(self) -> float:
        """How far training is through its budget, 0..1: the further of time (``max_minutes``) and
        updates (``max_steps``, or ``max_epochs`` of updates); 0 without any limit."""
        tc, p = self.tc, self.progress
        fractions = [p.elapsed / self.seconds] if tc.max_minutes > 0 else []
        if tc.max_steps or tc.max_epochs:
            fractions.append(p.step / max(1, self.total_steps or 1))
        return min(1.0, max(fractions, default=0.0))

    def schedule_fraction(self, step: int) -> float | None:
        """What the LR schedule decays by under a time budget: whichever of time and steps (epochs) is
        further along, so a budgeted run anneals by the time it stops; None = by steps alone."""
        tc = self.tc
        if tc.max_minutes <= 0:
            return None
        fraction = self.progress.elapsed / self.seconds
        if tc.max_steps or tc.max_epochs:
            fraction = max(fraction, step / max(1, self.total_steps))
        return fraction
