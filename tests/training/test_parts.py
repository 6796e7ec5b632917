"""The trainer's parts, each alone: the budget clock, the checkpointer, the loggers, the weight average,
the optimizer update and the split evaluation."""

from __future__ import annotations

import contextlib
import csv
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnapps.errors import AttnappsError
from attnapps.task import Evaluation
from attnapps.training.checkpoint import Checkpointer, check_same_data, load_checkpoint
from attnapps.training.clock import Budget, Progress
from attnapps.training.distributed import DistInfo
from attnapps.training.ema import EMA, averaged
from attnapps.training.evaluation import evaluate_split
from attnapps.training.loggers import CSVLogger
from attnapps.training.updater import Updater, build_optimizer


def trainer_cfg(**kw):
    base = dict(max_minutes=0.0, max_steps=0, max_epochs=0, clip_grad_norm=0.0, precision="fp32", ema=0.0,
                lr=0.1, weight_decay=0.0, betas=(0.9, 0.99))
    return SimpleNamespace(**{**base, **kw})


# ---------------------------------------------------------------------------------- Budget
def test_budget_fraction_is_the_further_of_time_and_steps():
    p = Progress(step=30, elapsed=30.0)
    b = Budget(trainer_cfg(max_minutes=1.0, max_steps=100), p)
    b.total_steps = 100
    assert b.fraction() == pytest.approx(0.5)  # time 30/60 ahead of steps 30/100
    p.step = 80
    assert b.fraction() == pytest.approx(0.8)
    assert b.schedule_fraction(80) == pytest.approx(0.8)
    assert not b.done()
    p.elapsed = 61.0
    assert b.done() and b.fraction() == 1.0
    assert Budget(trainer_cfg(), Progress(step=5)).fraction() == 0.0  # no limit at all
    assert Budget(trainer_cfg(max_steps=10), p).schedule_fraction(3) is None  # steps alone: the schedule's own


def test_budget_ticks_split_training_from_evaluation_time(monkeypatch):
    now = iter([0.0, 2.0, 5.0])
    monkeypatch.setattr("attnapps.training.clock.time.perf_counter", lambda: next(now))
    p = Progress()
    b = Budget(trainer_cfg(max_minutes=1.0), p)
    assert b.tick(train=True) == 2.0
    assert b.tick(train=False) == 3.0
    assert (p.elapsed, p.train_seconds) == (5.0, 2.0)


def test_progress_round_trips_in_place():
    p = Progress()
    held = p
    p.load_state_dict(Progress(step=7, epoch=2, best=0.5, elapsed=9.0).state_dict())
    assert held is p and (p.step, p.epoch, p.best, p.elapsed) == (7, 2, 0.5, 9.0)


# ---------------------------------------------------------------------------------- Checkpointer
def test_checkpointer_resume_paths_and_refuses_non_finite_weights(tmp_path):
    c = Checkpointer(tmp_path)
    assert c.resume_path("false") is None
    with pytest.raises(AttnappsError, match="trainer.resume=true: .*last.pt does not exist"):
        c.resume_path("true")
    model = nn.Linear(2, 2)
    c.save_last({"model": model.state_dict()}, model, step=3)
    assert c.resume_path("true") == c.last and c.resume_path(str(tmp_path)) == c.last
    assert c.last_saved_step == 3 and "step 3" in c.last_good()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(AttnappsError, match="non-finite weights in weight at step 4"):
        c.save_best({"model": model.state_dict()}, model, step=4)
    assert not c.best.exists()
    assert torch.isfinite(load_checkpoint(c.last)["model"]["weight"]).all()


def test_checkpointer_restores_weights_optimizer_and_progress(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    from attnapps.training.checkpoint import rng_state

    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "rng": rng_state(), "progress": Progress(step=5).state_dict(), "ema": None}
    other = nn.Linear(3, 1)
    opt2 = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    progress = Progress()
    Checkpointer(tmp_path).restore(state, tmp_path / "x.pt", other, opt2, torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0),
                                   None, progress, DistInfo())
    assert torch.equal(other.weight, model.weight) and progress.step == 5
    assert opt2.state_dict()["state"][0]["momentum_buffer"].equal(opt.state_dict()["state"][0]["momentum_buffer"])
    with pytest.raises(AttnappsError, match="saved by 1 process"):
        Checkpointer(tmp_path).restore(state, tmp_path / "x.pt", other, opt2, sched, None, progress, DistInfo(0, 2))


def test_changed_data_is_refused_unless_forced():
    saved = {"data/a.txt": "sha256:11"}
    check_same_data(saved, {"elsewhere/a.txt": "sha256:11"}, force=False)  # moved, same content
    with pytest.raises(AttnappsError, match=r"the data changed since the checkpoint: data/a.txt \(gone\) \(and 1 more\)"):
        check_same_data(saved, {"data/b.txt": "sha256:22"}, force=False)
    check_same_data(saved, {"data/b.txt": "sha256:22"}, force=True)


# ---------------------------------------------------------------------------------- loggers
def test_csv_logger_appends_rows_and_resumes_up_to_the_checkpoint(tmp_path):
    log = CSVLogger(tmp_path)
    for step in (1, 2, 3):
        log.log(step, 0, float(step), {"train.loss": 1.0 / step})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and float(rows[1]["value"]) == 0.5
    (tmp_path / "new").mkdir()
    resumed = CSVLogger(tmp_path / "new")
    resumed.resume_from(tmp_path / "log.csv", step=2)
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "new" / "log.csv"))] == [1, 2]
    log.start_fresh()
    assert not (tmp_path / "log.csv").exists()


# ---------------------------------------------------------------------------------- EMA
def test_ema_known_values_and_applied_weights_are_restored():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(step=100)  # d = min(0.5, 101/110) = 0.5: 0.5 * 0 + 0.5 * 1
    assert ema.shadow["weight"].item() == pytest.approx(0.5)
    with averaged(ema):
        assert model.weight.item() == pytest.approx(0.5)
    assert model.weight.item() == 1.0
    with averaged(None):
        assert model.weight.item() == 1.0


# ---------------------------------------------------------------------------------- Updater
def updater_for(model, **kw):
    tc = trainer_cfg(**kw)
    opt = build_optimizer(model, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loss = lambda m, b: (((m(b["x"]) - b["y"]) ** 2).sum(), torch.tensor(len(b["y"])))  # noqa: E731
    return Updater(model, opt, sched, None, tc, DistInfo(), Progress(), loss, contextlib.nullcontext,
                   lambda: "no checkpoint was written yet")


def test_accumulated_update_equals_one_big_batch():
    torch.manual_seed(0)
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    b.load_state_dict(a.state_dict())
    out_a = updater_for(a).step([{"x": x, "y": y}])
    out_b = updater_for(b).step([{"x": x[:2], "y": y[:2]}, {"x": x[2:], "y": y[2:]}])
    assert out_a["loss"] == pytest.approx(out_b["loss"]) and out_a["count"] == out_b["count"] == 6
    torch.testing.assert_close(a.weight, b.weight)


def test_non_finite_loss_stops_fp32_and_is_skipped_in_bf16():
    model = nn.Linear(2, 1)
    before = model.weight.detach().clone()
    batch = [{"x": torch.full((2, 2), float("inf")), "y": torch.zeros(2, 1)}]
    with pytest.raises(AttnappsError, match="non-finite training loss at step 1.*no checkpoint"):
        updater_for(model).step(batch)
    u = updater_for(model, precision="bf16")
    assert u.step(batch) is None and u.progress.skipped_steps == 1
    assert torch.equal(model.weight, before)


# ---------------------------------------------------------------------------------- evaluation
def test_evaluate_split_adds_the_loss_and_accepts_a_plain_dict_or_an_evaluation():
    class Task:
        def batches(self, split):
            yield {"n": 2}
            yield {"n": 4}

        def loss(self, model, batch):
            return torch.tensor(float(batch["n"])), torch.tensor(batch["n"])

        def evaluate(self, model, split, final=False):
            return Evaluation({"acc": 0.25}, outputs=["out"]) if final else {"acc": 0.5}

    model = nn.Linear(1, 1)
    metrics, outputs = evaluate_split(Task(), model, "valid", False, contextlib.nullcontext)
    assert metrics == {"loss": 1.0, "acc": 0.5} and outputs is None and model.training
    metrics, outputs = evaluate_split(Task(), model, "test", True, contextlib.nullcontext, max_batches=1)
    assert metrics == {"loss": 1.0, "acc": 0.25} and outputs == ["out"]
    assert math.isclose(metrics["loss"], 1.0)
