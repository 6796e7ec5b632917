"""Losses every sequence task needs, in the trainer's ``(sum over items, number of items)`` form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sequence_loss(logits: Tensor, target: Tensor, pad_id: int | None = None,
                  label_smoothing: float = 0.0, log_probs: bool = False) -> tuple[Tensor, Tensor]:
    """Token cross-entropy summed over the non-padding targets, and their count.

    ``logits (batch, len, vocab)`` (computed in fp32), ``target (batch, len)``; ``pad_id`` None = no
    padding (every position counts). ``log_probs=True``: ``logits`` are log-probabilities already (a model
    whose output layer normalises, e.g. with a copy mixture), so the loss reads them as they are instead of
    normalising them again: the same value (``log_softmax`` of log-probabilities is themselves), one pass
    over ``(batch, len, vocab)`` instead of a ``log_softmax`` forward and backward."""
    ignore = -100 if pad_id is None else pad_id
    count = target.numel() if pad_id is None else (target != pad_id).sum()
    if not log_probs:
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum",
                               ignore_index=ignore, label_smoothing=label_smoothing)
        return loss, torch.as_tensor(count)
    logp, target = logits.flatten(0, 1).float(), target.flatten()  # (n, vocab), (n,)
    keep = target != ignore
    nll = -logp.gather(1, torch.where(keep, target, 0).unsqueeze(1)).squeeze(1)  # (n,)
    if label_smoothing > 0:  # F.cross_entropy's: (1 - e) nll + e * the mean over the vocabulary of -log p
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(1)
    return (nll * keep).sum(), torch.as_tensor(count)
