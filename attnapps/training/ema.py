"""An exponential moving average of the weights (``trainer.ema``), evaluated and kept as the best model."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * weights`` with ``d = min(decay, (1 + step) / (10 + step))`` over the
    floating-point entries of the model's state dict, in fp32."""

    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in self.model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.float(), alpha=1 - d)

    def applied(self):
        """Inside: the model holds the averaged weights; its own are restored after."""
        return weights_applied(self.model, self.shadow)

    def state_dict(self) -> dict:
        return self.shadow

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.float() for k, v in state.items()}


@contextlib.contextmanager
def weights_applied(model: nn.Module, weights: dict):
    """Inside: ``model`` holds ``weights`` (a partial state dict); its own are restored after."""
    state = model.state_dict()
    backup = {k: state[k].clone() for k in weights}
    with torch.no_grad():
        for k, v in weights.items():
            state[k].copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in backup.items():
                state[k].copy_(v)


def maybe_ema(model: nn.Module, decay: float) -> EMA | None:
    return EMA(model, decay) if decay > 0 else None


@contextlib.contextmanager
def averaged(average):
    """``average.applied()`` (an :class:`EMA` or a :class:`~attnapps.training.swa.WeightAverage`), or
    nothing without an average."""
    if average is None:
        yield
    else:
        with average.applied():
            yield
