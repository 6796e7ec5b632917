"""One optimizer update: gradients summed over the accumulated batches and all processes, divided by
the global item count (so it equals the update of one big batch), checked for non-finite values before
anything is applied, clipped, stepped, scheduled and averaged (EMA). Also the optimizer and seeding."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from attnapps.errors import AttnappsError
from attnapps.training import distributed as dist
from attnapps.training.optim import has_sparse_parameters


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def build_optimizer(model: nn.Module, tc) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on biases, norms, or 1-D parameters). A model with sparse
    lookup tables (``nn.Embedding(sparse=True)``) gets :class:`~attnapps.training.optim.RowwiseAdamW`: the
    same update, applied only to the rows each batch reads."""
    from attnapps.training.optim import RowwiseAdamW

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=tc.lr, betas=tuple(tc.betas))
    cls = RowwiseAdamW if has_sparse_parameters(model) else torch.optim.AdamW
    try:
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(groups, **kwargs)


class Updater:
    """``Updater(...).step(batches)`` -> ``{"loss", "count", "grad_norm"}``, or None when a bf16 update
    was skipped. ``loss(model, batch) -> (sum, count)`` is the task's; ``last_good()`` names the last
    checkpoint for the error of an fp32 run that cannot go on."""

    def __init__(self, model: nn.Module, optimizer, scheduler, ema, trainer_cfg, dist_info, progress,
                 loss: Callable, autocast: Callable, last_good: Callable[[], str]):
        self.model, self.optimizer, self.scheduler, self.ema = model, optimizer, scheduler, ema
        self.tc, self.dist, self.progress = trainer_cfg, dist_info, progress
        self.loss, self.autocast, self.last_good = loss, autocast, last_good
        # fp16: the loss is scaled up before backward so small gradients survive the half range; the
        # scale halves after an overflow and doubles after 2,000 clean steps (torch.amp.GradScaler). The
        # tasks' losses are sums over the batch's items, whose gradients are already that many times a
        # mean's: the scale starts at 2^8, not 2^16 (where the first updates would overflow and be skipped).
        device = next(model.parameters()).device
        self.scaler = (torch.amp.GradScaler(device.type, init_scale=2.0 ** 8) if trainer_cfg.precision == "fp16"
                       else None)
        self.sparse = has_sparse_parameters(model)  # nn.Embedding(sparse=True): gradients to coalesce
        self.ddp = model
        if dist_info.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[next(model.parameters()).device.index] if next(model.parameters()).is_cuda else None)

    def _non_finite(self, what: str) -> None:
        """A non-finite loss or gradient norm: never applied. fp32 stops the run (it will not recover);
        bf16 and fp16 skip the update and count it (an overflow of the low-precision range; fp16's loss
        scale has been lowered by then)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.tc.precision in ("bf16", "fp16"):
            self.progress.skipped_steps += 1
            return
        raise AttnappsError(f"non-finite {what} at step {self.progress.step + 1}; stopping, the weights were not "
                            f"updated ({self.last_good()}; try a lower trainer.lr or trainer.clip_grad_norm)")

    def step(self, batches: list) -> dict | None:
        """One optimizer update over ``batches`` (the accumulation group); None if it was skipped."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_total = torch.zeros((), dtype=torch.float64)
        count_total = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1
            ctx = self.ddp.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
            with ctx:
                with self.autocast():
                    loss_sum, n = self.loss(self.ddp, batch)
                loss_sum = loss_sum.float()
                (self.scaler.scale(loss_sum) if self.scaler is not None else loss_sum).backward()
            loss_total += loss_sum.detach().double().cpu()
            count_total += float(n)
        stats = dist.all_reduce_sum(torch.stack([loss_total, count_total]))
        loss_total, count_total = stats[0], stats[1]
        if not torch.isfinite(loss_total):
            return self._non_finite("training loss")
        if self.scaler is not None:  # back to true gradients (inf/NaN where fp16 overflowed)
            self.scaler.unscale_(self.optimizer)
        # DDP averaged the gradient sums over processes; rescale to the global mean per item.
        scale = self.dist.world_size / float(count_total.clamp(min=1))
        if self.sparse:
            for p in params:
                if p.grad is not None and p.grad.is_sparse:  # (a lookup table's rows): duplicates summed, so
                    p.grad = p.grad.coalesce().mul_(scale)  # the norm below counts each row once
        grads = [p.grad for p in params if p.grad is not None]
        dense = [g for g in grads if not g.is_sparse]
        if dense:  # one call for all dense gradients
            torch._foreach_mul_(dense, scale)
        # (every rank holds the same all-reduced gradients, so every rank takes the same decision)
        grad_norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0) if grads else torch.zeros(())
        if not torch.isfinite(grad_norm):
            if self.scaler is not None:
                self.scaler.update()  # the overflow unscale_ found lowers the scale
            return self._non_finite("gradient norm")
        if self.tc.clip_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.tc.clip_grad_norm, grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # (the gradients are finite: it steps)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.progress.step)
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss_total / count_total.clamp(min=1)), "count": float(count_total),
                "grad_norm": float(grad_norm)}
