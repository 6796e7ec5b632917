"""The shared trainer on the test-only dummy task: reproducibility, accumulation, resume, NaN guard."""

import csv

import pytest
import torch

import tests.dummy_task as dummy
from attnapps.run import train as run_training
from attnapps.errors import AttnappsError, ConfigError
from attnapps.training import load_checkpoint
from attnapps.training.clock import Progress
from attnapps.training.progress import progress_bar
from attnapps.training.schedules import lr_factor


def losses(run_dir):
    with open(run_dir / "log.csv") as f:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["key"] == "train.loss"]


def train(cfg, run_dir):
    return run_training(cfg, run_dir, dummy.DummyTask)


def test_same_seed_same_loss_curve(dummy_cfg, tmp_path):
    a = train(dummy_cfg(), tmp_path / "a")
    b = train(dummy_cfg(), tmp_path / "b")
    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 28
    assert a == {**b, "train.wall_seconds": a["train.wall_seconds"],  # all but the measured times and memory
                 "train.examples_per_sec": a["train.examples_per_sec"], "train.peak_memory_mb": a["train.peak_memory_mb"],
                 "train.first_update_seconds": a["train.first_update_seconds"],
                 **{k: v for k, v in a.items() if k.startswith("time.")}}
    assert a["train.first_update_seconds"] > 0  # counted from the run's start (data and model included)
    c = train(dummy_cfg("seed=7"), tmp_path / "c")
    assert losses(tmp_path / "c") != losses(tmp_path / "a") and c["valid.loss"] != a["valid.loss"]


def test_time_split_and_items_seen(dummy_cfg, tmp_path, monkeypatch):
    """metrics.json's time.* split: slow batches count as training steps, a slow evaluation as evaluation
    while training (2 epoch ends) and as the final evaluation (valid + test); log.csv's running count of
    examples makes a throughput over any window."""
    evaluate = dummy.DummyTask.evaluate

    def slow_evaluate(self, *a, **k):
        import time

        time.sleep(0.15)
        return evaluate(self, *a, **k)
    monkeypatch.setattr(dummy.DummyTask, "evaluate", slow_evaluate)
    m = train(dummy_cfg("data.collate_sleep=0.02"), tmp_path)
    assert m["time.train_steps_seconds"] >= 28 * 0.02
    assert 2 * 0.15 <= m["time.eval_seconds"] < m["train.wall_seconds"]
    assert m["time.final_eval_seconds"] >= 2 * 0.15
    assert m["time.eval_seconds"] + m["time.train_steps_seconds"] == pytest.approx(m["train.wall_seconds"], abs=2e-3)
    spent = m["time.setup_seconds"] + m["train.wall_seconds"]
    assert m["time.outside_steps_share"] == pytest.approx((m["time.setup_seconds"] + m["time.eval_seconds"]) / spent,
                                                          abs=1e-3)
    with open(tmp_path / "log.csv") as f:
        seen = {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["key"] == "train.examples_seen"}
    assert (seen[1], seen[14], seen[28]) == (16, 224, 448)  # 224 training examples, 16 a batch, 2 epochs
    from tests.test_scripts_smoke import markdown_rows, script

    row = markdown_rows(script("time_split.py", str(tmp_path)).stdout)[1]
    assert row[0] == "dummy" and row[5] == "28"
    assert [float(row[i]) for i in (1, 2, 3, 7)] == pytest.approx(
        [m["time.setup_seconds"], m["time.train_steps_seconds"], m["time.eval_seconds"], m["time.final_eval_seconds"]],
        abs=0.051)
    assert float(row[4].strip("*%")) == pytest.approx(100 * m["time.outside_steps_share"], abs=0.051)


def test_accumulation_equals_big_batch(dummy_cfg, tmp_path):
    big = dummy_cfg("model.dropout=0", "trainer.batch_size=32", "trainer.max_steps=6")
    acc = dummy_cfg("model.dropout=0", "trainer.batch_size=16", "trainer.accumulate=2", "trainer.max_steps=6")
    train(big, tmp_path / "big")
    train(acc, tmp_path / "acc")
    for (s1, l1), (s2, l2) in zip(losses(tmp_path / "big"), losses(tmp_path / "acc")):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5)


def test_learns_and_keeps_best_checkpoint(dummy_cfg, tmp_path):
    metrics = train(dummy_cfg("trainer.max_epochs=6"), tmp_path)
    assert metrics["test.accuracy"] > 0.85
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["step"] == metrics["train.best_step"] and best["task_state"] == {"classes": ["neg", "pos"]}
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == metrics["train.steps"] == 6 * 14


def test_max_steps_and_early_stopping(dummy_cfg, tmp_path):
    m = train(dummy_cfg("trainer.max_steps=5", "trainer.max_epochs=0"), tmp_path / "s")
    assert m["train.steps"] == 5
    assert (m["train.budget_used"], m["train.stopped_early"]) == (1.0, 0)
    # lr=0: the metric never improves, so patience=2 stops after 3 evaluations (1 best + 2 bad) when
    # early stopping may end the run at any time ...
    lr0 = ("trainer.lr=0", "trainer.eval_every=2", "trainer.patience=2", "trainer.max_epochs=50",
           "trainer.after_early_stop=none")
    m = train(dummy_cfg(*lr0, "trainer.patience_after=0"), tmp_path / "p")
    assert m["train.steps"] == 6 and m["train.stopped_early"] == 1
    assert m["train.budget_used"] == pytest.approx(6 / 700, abs=1e-4)  # 50 epochs of 14 updates
    # ... and by default (patience_after=0.5) at the first evaluation at half the budget: update 350
    m = train(dummy_cfg(*lr0), tmp_path / "half")
    assert m["train.steps"] == 350 and m["train.stopped_early"] == 1 and m["train.budget_used"] == 0.5
    report = (tmp_path / "half" / "report.md").read_text()
    assert ("Training used 50% of its budget (50 epochs): " in report
            and "stopped early: no better valid accuracy in 2 evaluations (allowed once 50% of the budget" in report)


class PhasedTask(dummy.DummyTask):
    """The dummy task with a second training phase from 40% of the budget on."""

    def training_phase(self):
        return int(self.budget_fraction() >= 0.4)


def test_a_new_training_phase_gets_its_own_patience(dummy_cfg, tmp_path):
    # lr=0, patience 2 at any time: the first phase would stop at update 6; the phase change at update 280
    # (40% of 700) is not reached, so that run stops as before ...
    cfg = ("trainer.lr=0", "trainer.eval_every=2", "trainer.patience=2", "trainer.max_epochs=50",
           "trainer.after_early_stop=none")
    m = run_training(dummy_cfg(*cfg, "trainer.patience_after=0"), tmp_path / "a", PhasedTask)
    assert m["train.steps"] == 6
    # ... while with early stopping allowed from 40%, the evaluation at update 280 is the new phase's first
    # (its count restarts: not improved = 1 bad evaluation), so the run stops at its second bad one, 282
    m = run_training(dummy_cfg(*cfg, "trainer.patience_after=0.4"), tmp_path / "b", PhasedTask)
    assert m["train.steps"] == 282
    m = run_training(dummy_cfg(*cfg, "trainer.patience_after=0.4"), tmp_path / "c", dummy.DummyTask)
    assert m["train.steps"] == 280  # without the phase: two bad evaluations long since, so it stops at once


def test_the_budget_left_after_early_stopping_averages_weights(dummy_cfg, tmp_path):
    # Early stopping at any time ends this run at update 16 of 280 (20 epochs of 14) ...
    cfg = ("trainer.eval_every=2", "trainer.patience=2", "trainer.max_epochs=20", "trainer.patience_after=0")
    alone = train(dummy_cfg(*cfg, "trainer.after_early_stop=none"), tmp_path / "none")
    assert (alone["train.steps"], alone["train.averaged_weights"]) == (16, 0)
    # ... by default the rest of the budget goes on from the best weights and averages the weights at each
    # evaluation (every 2 updates); the best average (n members: the best weights, then one per evaluation
    # since update 16) is kept because it is better on valid -- and here on test too
    m = train(dummy_cfg(*cfg), tmp_path / "average")
    n = m["train.averaged_weights"]
    assert m["train.steps"] == 280 and m["train.budget_used"] == 1.0 and m["train.stopped_early"] == 1
    assert n > 1 and n == 1 + (m["train.best_step"] - 16) // 2
    # without any budget, early stopping is the end: nothing is left over to average with
    unlimited = train(dummy_cfg(*cfg[:2], "trainer.max_epochs=0", "trainer.patience_after=0"), tmp_path / "nolimit")
    assert (unlimited["train.steps"], unlimited["train.averaged_weights"]) == (16, 0)
    assert m["valid.accuracy"] > alone["valid.accuracy"] and m["test.accuracy"] > alone["test.accuracy"] + 0.1
    report = (tmp_path / "average" / "report.md").read_text()
    assert ("stopped early at update 16: no better valid accuracy in 2 evaluations; the rest of the budget averaged "
            "weights (SWA" in report and f"the average of {n} weights was better on valid (accuracy "
            f"{m['valid.accuracy']:.4g} vs {alone['valid.accuracy']:.4g}) and is the model kept" in report)
    # the weights kept are the average's, not the ones trained to at the end
    best = load_checkpoint(tmp_path / "average/checkpoints/best.pt")["model"]
    last = load_checkpoint(tmp_path / "average/checkpoints/last.pt")
    assert last["average"]["n"] == 1 + (280 - 16) // 2
    assert not torch.equal(best["0.weight"], last["model"]["0.weight"])


def test_weight_average_is_the_mean_of_its_members():
    from attnapps.training.swa import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        average = WeightAverage(model)  # first member: 1
        for value in (2.0, 6.0):
            model.weight.fill_(value)
            average.update()
    assert average.n == 3
    with average.applied():
        assert torch.equal(model.weight, torch.full((1, 2), 3.0))  # (1 + 2 + 6) / 3
    assert torch.equal(model.weight, torch.full((1, 2), 6.0))  # its own weights back


def test_budget_reason_names_the_limit_reached():
    from types import SimpleNamespace

    from attnapps.training.clock import Budget

    tc = SimpleNamespace(max_steps=10, max_epochs=3, max_minutes=1.0)
    p = Progress(step=10, epoch=1, elapsed=5.0)
    assert Budget(tc, p).reason() == "steps"
    assert Budget(tc, Progress(step=4, epoch=3)).reason() == "epochs"
    assert Budget(tc, Progress(step=4, epoch=1, elapsed=61.0)).reason() == "time"
    assert Budget(tc, Progress(step=4, epoch=1, elapsed=59.0)).reason() == ""


def test_nan_loss_stops_and_keeps_last_good_checkpoint(dummy_cfg, tmp_path):
    cfg = dummy_cfg("data.nan_at_call=13", "trainer.checkpoint_every=5")
    with pytest.raises(AttnappsError, match="non-finite training loss at step 13.*last good checkpoint"):
        train(cfg, tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_inf_gradient_with_finite_loss_never_reaches_a_checkpoint(dummy_cfg, tmp_path):
    """fp32: the run stops at the step whose gradient norm is inf; the weights were never updated with
    it and the last checkpoint (a checkpoint step itself) holds finite weights."""
    cfg = dummy_cfg("data.inf_grad_at_call=10", "trainer.checkpoint_every=5")
    with pytest.raises(AttnappsError, match=r"non-finite gradient norm at step 10.*last good checkpoint.*\(step 5\)"):
        train(cfg, tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_bf16_skips_and_counts_a_non_finite_step(dummy_cfg, tmp_path):
    m = train(dummy_cfg("data.inf_grad_at_call=7", "trainer.precision=bf16", "trainer.max_epochs=0",
                        "trainer.max_steps=20"), tmp_path)
    assert m["train.skipped_steps"] == 1 and m["train.steps"] == 20
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]
    assert all(torch.isfinite(v).all() for v in best.values())


def test_bf16_output_needs_an_output_layer(dummy_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.precision=bf16-output: this model has no .*OutputLayer"):
        train(dummy_cfg("trainer.precision=bf16-output", "trainer.max_epochs=0", "trainer.max_steps=2"), tmp_path)


def test_fp16_scales_the_loss_skips_an_overflow_and_lowers_the_scale(dummy_cfg, tmp_path):
    """torch.amp.GradScaler: starts at 2^8 (the losses are sums), the inf gradient of update 7 is not
    applied, is counted, and halves the scale; no other update overflows."""
    m = train(dummy_cfg("data.inf_grad_at_call=7", "trainer.precision=fp16", "trainer.max_epochs=0",
                        "trainer.max_steps=20"), tmp_path)
    assert m["train.skipped_steps"] == 1 and m["train.steps"] == 20
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["scaler"]["scale"] == 128.0 and last["scaler"]["_growth_tracker"] == 20 - 7 + 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_fp16_updates_follow_fp32(dummy_cfg, tmp_path):
    """The scaled and unscaled gradients are the fp32 ones up to half-precision rounding: the first
    updates' losses agree to a few parts in a thousand, and the model learns."""
    from tests.training.test_distributed import train_losses

    a = train(dummy_cfg("model.dropout=0", "trainer.precision=fp16", "trainer.max_epochs=4"), tmp_path / "fp16")
    b = train(dummy_cfg("model.dropout=0", "trainer.max_epochs=4"), tmp_path / "fp32")
    assert train_losses(tmp_path / "fp16")[:10] == pytest.approx(train_losses(tmp_path / "fp32")[:10], rel=5e-3)
    assert a["test.accuracy"] > 0.7 and a["train.skipped_steps"] == 0
    assert abs(a["test.accuracy"] - b["test.accuracy"]) < 0.05


@pytest.mark.slow
def test_compiled_model_trains_as_the_eager_one(dummy_cfg, tmp_path):
    """``trainer.compile=true`` (Inductor, compiled in place): the same losses as eager up to float
    reassociation, and checkpoints with the eager model's keys (they load into an uncompiled model)."""
    from tests.training.test_distributed import train_losses

    a = train(dummy_cfg("model.dropout=0", "trainer.compile=true"), tmp_path / "compiled")
    b = train(dummy_cfg("model.dropout=0"), tmp_path / "eager")
    assert train_losses(tmp_path / "compiled") == pytest.approx(train_losses(tmp_path / "eager"), rel=1e-4, abs=1e-6)
    assert a["test.accuracy"] == b["test.accuracy"]
    best = load_checkpoint(tmp_path / "compiled/checkpoints/best.pt")["model"]
    assert set(best) == set(load_checkpoint(tmp_path / "eager/checkpoints/best.pt")["model"])


def test_time_budget_counts_data_loading(dummy_cfg, tmp_path):
    """Batches that take 0.1 s to load under a 0.5 s budget: about 5 updates, not hundreds."""
    m = train(dummy_cfg("data.collate_sleep=0.1", "trainer.max_minutes=0.00834", "trainer.max_epochs=0",
                        "trainer.eval_every=1000"), tmp_path)
    assert 0.5 <= m["train.wall_seconds"] < 1.5
    assert m["train.steps"] <= 6
    assert m["train.examples_per_sec"] < 16 / 0.1 * 1.05  # throughput includes the loading time


def test_progress_bar_shows_the_time_budget(dummy_cfg, tmp_path):
    cfg = dummy_cfg("trainer.max_minutes=2", "trainer.progress=true")
    bar = progress_bar(cfg.trainer, Progress(), "dummy", steps_per_epoch=1)
    assert bar.total == 120 and bar.bar.unit == "s" and "time budget" in bar.bar.desc
    bar.close()


def test_schedules_known_values():
    assert lr_factor(0, "cosine", 10, 110) == pytest.approx(0.1)
    assert lr_factor(9, "linear", 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, "cosine", 10, 110, 0.0) == pytest.approx(0.5)
    assert lr_factor(110, "linear", 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(39, "inverse_sqrt", 10, 0) == pytest.approx(0.5)
    assert lr_factor(500, "constant", 10, 100) == 1.0
    with pytest.raises(ValueError):
        lr_factor(0, "cosin", 1, 1)


def test_bf16_autocast_runs_and_learns(dummy_cfg, tmp_path):
    m = train(dummy_cfg("trainer.precision=bf16", "trainer.max_epochs=4"), tmp_path)
    assert m["test.accuracy"] > 0.7


def test_ema_weights_are_evaluated_and_kept_as_best(dummy_cfg, tmp_path):
    # a vanishing decay is the plain model: same metrics as without EMA
    plain = train(dummy_cfg("model.dropout=0"), tmp_path / "plain")
    tiny = train(dummy_cfg("model.dropout=0", "trainer.ema=1e-12"), tmp_path / "tiny")
    assert tiny["valid.loss"] == pytest.approx(plain["valid.loss"], rel=1e-6)
    # one evaluation, after the last update: best.pt and last.pt are the same step, whatever the losses
    once = ("model.dropout=0", "trainer.max_epochs=0", "trainer.max_steps=30", "trainer.eval_every=30")
    ema = train(dummy_cfg(*once, "trainer.ema=0.9"), tmp_path / "ema")
    assert ema["valid.loss"] != pytest.approx(train(dummy_cfg(*once), tmp_path / "once")["valid.loss"], rel=1e-6)
    best = load_checkpoint(tmp_path / "ema/checkpoints/best.pt")
    last = load_checkpoint(tmp_path / "ema/checkpoints/last.pt")
    assert set(last["ema"]) == set(best["model"])
    assert best["step"] == last["progress"]["step"] == 30
    assert all(torch.equal(best["model"][k], last["ema"][k]) for k in best["model"])  # best.pt: the average
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # last.pt: both
