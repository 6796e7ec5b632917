"""A model's output layer over a vocabulary, which may compute in bf16 while training
(``trainer.precision=bf16-output``).

The projection from a decoder's state to a vocabulary's logits, ``(.., hidden) -> (.., vocab)``, is the
largest matmul of a small sequence model: three ``tokens x hidden x vocab`` matmuls a step (forward, and
the two of backward). On a CPU with bf16 units (Intel AMX) a bf16 matmul of that shape runs several times
faster than fp32 (``(929, 256) x (256, 4000)``: 4.5 ms in fp32, 0.6 ms in bf16 on this project's CPU).
Autocasting the whole model would also put the recurrent and attention steps' small elementwise
operations in bf16, which this CPU runs slower (``tanh`` 10x; ``docs/results/performance.md``).

:class:`OutputLayer` is ``nn.Linear`` (same arguments, parameters and ``state_dict``). With ``bf16`` set and
in training mode, its matmul runs under bf16 autocast and its output is cast back to fp32: the logits are
rounded to bf16's 8 significant bits, the loss and everything before the layer stay fp32. In evaluation
mode (validation, decoding, ``attnapps.predict``, serving) it is the fp32 ``nn.Linear``, so a saved model
scores and decodes the same wherever it is loaded. :func:`set_bf16_output` sets the flag on every
:class:`OutputLayer` of a model; the trainer calls it when the precision resolves to ``bf16-output``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OutputLayer(nn.Linear):
    """``nn.Linear(in_features, out_features)`` whose forward, with :attr:`bf16` set and in training mode,
    computes in bf16 and returns fp32 (see the module's docstring)."""

    bf16: bool = False

    def forward(self, x: Tensor) -> Tensor:
        if not (self.bf16 and self.training) or torch.is_autocast_enabled(x.device.type):
            return super().forward(x)  # (an enclosing autocast decides for the whole model)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return super().forward(x).float()  # (.., out_features)


def set_bf16_output(model: nn.Module, on: bool = True) -> int:
    """Set :attr:`OutputLayer.bf16` on every :class:`OutputLayer` in ``model``; how many there are."""
    layers = [m for m in model.modules() if isinstance(m, OutputLayer)]
    for layer in layers:
        layer.bf16 = on
    return len(layers)
