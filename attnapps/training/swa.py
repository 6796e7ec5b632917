"""Stochastic weight averaging (``trainer.after_early_stop=average``): what the trainer does with the
budget left when early stopping ends a run before its time.

Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better Generalization": go on training
from the best weights at a constant learning rate and average the weights visited. Here the average is
uniform over the best weights and the weights at each later evaluation (``n`` of them):
``avg <- avg + (w - avg) / n``, over the floating-point entries of the state dict, in fp32 (normalisation
statistics of a trained CNN are averaged as well, an approximation where BatchNorm layers train).
The average is evaluated on valid and kept as the best model only when it is better there.
"""

from __future__ import annotations

import torch
from torch import nn

from attnapps.training.ema import weights_applied


class WeightAverage:
    """The uniform average of the model's weights when built (the first member) and at each
    :meth:`update`."""

    def __init__(self, model: nn.Module):
        self.model, self.n = model, 1
        self.mean = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self) -> None:
        """Add the model's current weights to the average."""
        self.n += 1
        for k, v in self.model.state_dict().items():
            if k in self.mean:
                self.mean[k].add_(v.float() - self.mean[k], alpha=1.0 / self.n)

    def applied(self):
        """Inside: the model holds the averaged weights; its own are restored after."""
        return weights_applied(self.model, self.mean)

    def state_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.n, self.mean = state["n"], {k: v.float() for k, v in state["mean"].items()}
