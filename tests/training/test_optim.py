"""Row-wise AdamW (attnapps/training/optim.py) against torch.optim.AdamW, and the updater with sparse tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnapps.training.optim import RowwiseAdamW, has_sparse_parameters
from attnapps.training.updater import build_optimizer

HYPER = dict(lr=0.05, betas=(0.9, 0.98), eps=1e-8)


class Lookup(nn.Module):
    """A lookup table, a dense layer on top (weight decay on both, as the trainer groups them)."""

    def __init__(self, sparse: bool, rows: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(rows, 4, sparse=sparse)
        self.out = nn.Linear(4, 3)

    def forward(self, ids):
        return self.out(self.table(ids)).pow(2).sum()


def groups(model):
    return [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]


def train(model, opt, batches):
    for ids in batches:
        model(ids).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def every_row_batches(rows=12, steps=6):
    g = torch.Generator().manual_seed(1)
    # every row in every batch, some twice (duplicates must be summed), in a shuffled order
    return [torch.cat([torch.randperm(rows, generator=g), torch.randint(0, rows, (5,), generator=g)])
            for _ in range(steps)]


def test_equals_adamw_when_every_row_is_in_every_gradient():
    batches = every_row_batches()
    dense, sparse = Lookup(sparse=False), Lookup(sparse=True)
    train(dense, torch.optim.AdamW(groups(dense), **HYPER), batches)
    train(sparse, RowwiseAdamW(groups(sparse), **HYPER), batches)
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(a, Lookup(sparse=False).state_dict()[name])  # (they did train)


def test_rows_not_read_stay_as_they_are():
    model = Lookup(sparse=True)
    before = model.table.weight.detach().clone()
    opt = RowwiseAdamW(groups(model), **HYPER)
    train(model, opt, [torch.tensor([1, 3, 3]), torch.tensor([3, 7])])
    changed = (model.table.weight != before).any(1)
    assert changed.nonzero().flatten().tolist() == [1, 3, 7]
    state = opt.state[model.table.weight]
    assert state["exp_avg"][[0, 2, 4]].abs().sum() == 0 and float(state["step"]) == 2
    # the row read in both steps matches a dense AdamW on the same two gradients of that row
    assert state["exp_avg_sq"][3].gt(0).all()


def test_state_dict_round_trip_resumes_exactly():
    batches = every_row_batches(steps=4)
    whole = Lookup(sparse=True)
    train(whole, RowwiseAdamW(groups(whole), **HYPER), batches)
    first = Lookup(sparse=True)
    opt = RowwiseAdamW(groups(first), **HYPER)
    train(first, opt, batches[:2])
    saved = ({k: v.clone() for k, v in first.state_dict().items()}, opt.state_dict())
    resumed = Lookup(sparse=True)
    resumed.load_state_dict(saved[0])
    opt2 = RowwiseAdamW(groups(resumed), **HYPER)
    opt2.load_state_dict(saved[1])
    train(resumed, opt2, batches[2:])
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_build_optimizer_and_updater_with_sparse_tables():
    """The trainer's optimizer is row-wise only for a model with sparse tables; the updater's gradient norm
    (and so its clipping) counts a duplicated row once, as the dense gradient does."""
    from attnapps.training.clock import Progress
    from attnapps.training.updater import Updater

    tc = SimpleNamespace(lr=0.05, betas=(0.9, 0.98), weight_decay=0.1, precision="fp32", clip_grad_norm=0.5)
    assert has_sparse_parameters(Lookup(sparse=True)) and not has_sparse_parameters(Lookup(sparse=False))
    assert type(build_optimizer(Lookup(sparse=False), tc)) is torch.optim.AdamW
    norms, weights = {}, {}
    for sparse in (False, True):
        model = Lookup(sparse=sparse)
        opt = build_optimizer(model, tc)
        assert isinstance(opt, RowwiseAdamW) == sparse
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        updater = Updater(model, opt, sched, None, tc, SimpleNamespace(enabled=False, world_size=1), Progress(),
                          lambda m, b: (m(b), 1), lambda: torch.autocast("cpu", enabled=False), lambda: "")
        ids = torch.arange(12).repeat(2)  # every row twice
        norms[sparse] = updater.step([ids])["grad_norm"]
        weights[sparse] = [p.detach().clone() for p in model.parameters()]
    assert norms[True] == pytest.approx(norms[False], rel=1e-6)
    for a, b in zip(weights[False], weights[True]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
