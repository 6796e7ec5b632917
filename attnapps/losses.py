"""Losses every sequence task needs, in the trainer's ``(sum over items, number of items)`` form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sequence_loss(logits: Tensor, target: Tensor, pad_id: int | None = None,
                  label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """Token cross-entropy summed over the non-padding targets, and their count.

    ``logits (batch, len, vocab)`` (computed in fp32), ``target (batch, len)``; ``pad_id`` None = no
    padding (every position counts)."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum",
                           ignore_index=-100 if pad_id is None else pad_id, label_smoothing=label_smoothing)
    count = target.numel() if pad_id is None else (target != pad_id).sum()
    return loss, torch.as_tensor(count)
