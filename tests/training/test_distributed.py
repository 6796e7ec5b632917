"""torchrun with 2 CPU processes (gloo) gives the same training as one process with the same global batch."""

import csv
import json

import pytest
import torch

from tests.conftest import run_cli


def train_losses(run_dir):
    with open(run_dir / "log.csv") as f:
        return [float(r["value"]) for r in csv.DictReader(f) if r["key"] == "train.loss"]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    args = ["task=dummy", "model.dropout=0", "trainer.batch_size=16", "trainer.max_epochs=2"]
    ddp = run_cli("--standalone", "--nproc_per_node=2", "-m", "attnapps.run", *args,
                  f"hydra.run.dir={tmp_path / 'ddp'}", module="torch.distributed.run")
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = run_cli(*args, f"hydra.run.dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr
    a, b = train_losses(tmp_path / "ddp"), train_losses(tmp_path / "single")
    assert len(a) == len(b) == 28
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    ma = json.loads((tmp_path / "ddp/metrics.json").read_text())
    mb = json.loads((tmp_path / "single/metrics.json").read_text())
    assert ma["test.accuracy"] == mb["test.accuracy"]
    assert ma["valid.loss"] == pytest.approx(mb["valid.loss"], rel=1e-5)


@pytest.mark.slow
def test_two_process_time_budget_stops_together(tmp_path):
    """Under a wall-clock budget the ranks share one clock (no deadlock, same number of updates)."""
    ddp = run_cli("--standalone", "--nproc_per_node=2", "-m", "attnapps.run", "task=dummy", "trainer.max_epochs=0",
                  "trainer.max_minutes=0.02", "trainer.eval_every=50", f"data.calls_file={tmp_path / 'calls'}",
                  f"hydra.run.dir={tmp_path / 'run'}", module="torch.distributed.run", timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["train.wall_seconds"] >= 1.2 and metrics["train.steps"] > 10
    updates = [int((tmp_path / f"calls.rank{r}").read_text()) for r in (0, 1)]
    assert updates[0] == updates[1] == metrics["train.steps"]


@pytest.mark.slow
def test_two_process_kill_and_resume_equals_uninterrupted(tmp_path):
    """Both ranks die in step 27 (last.pt from step 20 holds each rank's RNG state); resuming under
    torchrun ends exactly as the uninterrupted 2-process run, dropout included (per-rank seeds)."""
    from attnapps.training import load_checkpoint

    common = ["--standalone", "--nproc_per_node=2", "-m", "attnapps.run", "task=dummy", "model.dropout=0.3",
              "trainer.max_epochs=0", "trainer.max_steps=40", "trainer.checkpoint_every=10", "trainer.eval_every=15"]
    full = run_cli(*common, f"hydra.run.dir={tmp_path / 'full'}", module="torch.distributed.run")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run_cli(*common, "data.crash_at_call=27", f"hydra.run.dir={tmp_path / 'resumed'}",
                     module="torch.distributed.run")
    assert killed.returncode != 0
    last = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert last["progress"]["step"] == 20 and len(last["rng_ranks"]) == 2
    assert not torch.equal(last["rng_ranks"][0]["torch"], last["rng_ranks"][1]["torch"])  # per-rank dropout
    resumed = run_cli(*common, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'resumed'}",
                      module="torch.distributed.run")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert train_losses(tmp_path / "resumed") == train_losses(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = run_cli(*common[4:], "trainer.resume=true", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert single.returncode == 2 and "saved by 2 process(es), resumed with 1" in single.stderr
