"""The shared trainer: optimisation, schedules, checkpoints and resume, DDP under torchrun."""

from attnapps.training.checkpoint import atomic_save, load_checkpoint
from attnapps.training.schedules import lr_factor
from attnapps.training.trainer import Trainer

__all__ = ["Trainer", "atomic_save", "load_checkpoint", "lr_factor"]
