"""``trainer.precision=auto``: bf16 autocast where the device computes bf16 natively and the model gains
from it, fp32 elsewhere.

bf16 autocast halves the bytes of every matmul and recurrent kernel, but each autocast region also casts
its inputs. Whether that pays depends on the hardware and on the model:

* **CUDA**: GPUs with bf16 support (``torch.cuda.is_bf16_supported()``: Ampere and later) run bf16
  matmuls on their tensor cores; autocast is PyTorch's own recipe there, so ``auto`` picks bf16 for every
  model (not measured by this project, which had no GPU).
* **CPU**: only CPUs with bf16 units (Intel AMX or AVX512-BF16, ``torch.cpu._is_amx_tile_supported`` /
  ``_is_avx512_bf16_supported``) compute bf16 natively; the others emulate it, slower than fp32. Even with
  the units, whether it pays depends on the model: on this project's 2-core CPU, bf16 made the LSTM
  language model's step 1.73x faster and the 128-wide GPT's 1.60-1.65x (once its attention kernel trained in
  fp32, :func:`attnapps.attention.functional.sdpa`; before, 0.77x), and was a wash or slower for the
  other tasks' recurrent models (``scripts/profile_step.py --variants``). So a model opts in with the
  class attribute ``cpu_bf16 = True`` -- set only where it was measured to pay (at equal time, on valid)
  -- and ``auto`` picks bf16 on a CPU only for such a model. A model whose recurrent steps lose in bf16
  but whose output layer over the vocabulary gains sets ``cpu_bf16 = "output"``: ``auto`` then picks
  ``bf16-output`` there, the :class:`~attnapps.layers.output.OutputLayer` in bf16 while training and
  everything else fp32 (the RNN translator: its step 1.07-1.12x faster).
* Anything else (``mps``, a CPU without the units): fp32.

The trainer resolves ``auto`` once the model is built, before ``config.yaml`` is written, so the saved
config names the precision the run trained in.
"""

from __future__ import annotations

import torch
from torch import nn


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively (Intel AMX tiles or AVX512-BF16), by PyTorch's own CPU
    checks; False where PyTorch cannot tell."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    for check in checks:
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bf16_units()
    return False


def resolve_precision(precision: str, device: torch.device, model: nn.Module) -> str:
    """``trainer.precision`` with ``auto`` replaced: ``bf16`` on a GPU with bf16 support, or on a CPU with
    bf16 units for a model whose class sets ``cpu_bf16 = True`` (``bf16-output`` where it sets
    ``cpu_bf16 = "output"``); otherwise ``fp32``. Other values pass through unchanged."""
    if precision != "auto":
        return precision
    if not native_bf16(device):
        return "fp32"
    if device.type == "cpu":
        opted = getattr(model, "cpu_bf16", False)
        return "bf16-output" if opted == "output" else "bf16" if opted is True else "fp32"
    return "bf16"
