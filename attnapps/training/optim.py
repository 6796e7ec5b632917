"""AdamW that updates only the rows a sparse gradient touches (Kingma & Ba 2015; Loshchilov & Hutter 2019,
decoupled weight decay; the row-wise "lazy" update as in TensorFlow's LazyAdam and ``torch.optim.SparseAdam``).

A model with large lookup tables (``nn.Embedding(..., sparse=True)``: the classifier's hashed n-gram tables,
17M parameters of which a batch reads a few thousand rows) gets a sparse gradient for them. Dense AdamW
would rewrite every row of the table and both moment tensors each step; here the rows in the gradient are
read, updated and written back, and nothing else is touched:

    m_r <- b1 m_r + (1 - b1) g_r            v_r <- b2 v_r + (1 - b2) g_r^2
    p_r <- p_r (1 - lr wd) - lr / (1 - b1^t) * m_r / (sqrt(v_r / (1 - b2^t)) + eps)     for the rows r in g

with ``t`` counting the table's updates. When every row is in every gradient this is AdamW exactly
(tested against ``torch.optim.AdamW``); otherwise a row's moments and weight decay wait for its next
gradient (the lazy update). Dense gradients go through ``torch.optim.AdamW`` itself (fused where it can).
"""

from __future__ import annotations

import torch
from torch import Tensor


class RowwiseAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` for dense gradients, the row-wise update above for sparse ones; one optimizer
    (one set of param groups for the schedule, one state dict for checkpoints)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hidden = []  # sparse gradients, hidden from AdamW's own step
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    hidden.append((p, p.grad, group))
                    p.grad = None
        try:
            super().step()
        finally:
            for p, grad, _ in hidden:
                p.grad = grad
        for p, grad, group in hidden:
            self._sparse_step(p, grad, group)
        return loss

    def _sparse_step(self, p: Tensor, grad: Tensor, group: dict) -> None:
        grad = grad.coalesce()  # duplicate rows summed
        rows, values = grad.indices()[0], grad.values()  # (n,), (n, ...)
        if group.get("maximize", False):
            values = -values
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        lr = float(lr)
        m = state["exp_avg"].index_select(0, rows).mul_(b1).add_(values, alpha=1 - b1)  # (n, ...)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(b2).addcmul_(values, values, value=1 - b2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        w = p.index_select(0, rows)
        if wd:
            w.mul_(1 - lr * wd)
        denom = (v / (1 - b2 ** t)).sqrt_().add_(eps)
        w.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
        p.index_copy_(0, rows, w)


def has_sparse_parameters(model: torch.nn.Module) -> bool:
    """Whether any lookup table of ``model`` produces sparse gradients."""
    return any(getattr(m, "sparse", False) is True for m in model.modules()
               if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)))
