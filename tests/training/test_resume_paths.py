"""trainer.resume= pointing at another run (its directory or a .pt file) continues that run exactly, in a new
directory; under a time budget a resumed run keeps the clock it was stopped at, it does not start a new one."""

import csv
import json

import pytest
import torch

from attnapps.training import load_checkpoint
from tests.conftest import run_cli

COMMON = ["task=dummy", "model.dropout=0.3", "trainer.max_epochs=0", "trainer.max_steps=40",
          "trainer.checkpoint_every=10", "trainer.eval_every=15"]


def rows(run_dir, key):
    with open(run_dir / "log.csv") as f:
        return [(int(r["step"]), float(r["elapsed_s"]), float(r["value"]))
                for r in csv.DictReader(f) if r["key"] == key]


@pytest.fixture(scope="module")
def full_and_killed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    full = run_cli(*COMMON, f"hydra.run.dir={tmp / 'full'}")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run_cli(*COMMON, "data.crash_at_call=27", f"hydra.run.dir={tmp / 'killed'}")
    assert killed.returncode == 3  # os._exit in step 27: last.pt is step 20's
    assert load_checkpoint(tmp / "killed/checkpoints/last.pt")["progress"]["step"] == 20
    return tmp


@pytest.mark.parametrize("target", ["dir", "file"])
def test_resume_from_another_run_into_a_new_directory_ends_as_the_uninterrupted_run(full_and_killed, target):
    tmp = full_and_killed
    source = tmp / "killed" if target == "dir" else tmp / "killed/checkpoints/last.pt"
    new = tmp / f"continued-{target}"
    r = run_cli(*COMMON, f"trainer.resume={source}", f"hydra.run.dir={new}")
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_checkpoint(tmp / "full/checkpoints/last.pt")["model"]
    b = load_checkpoint(new / "checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the new directory's log carries the source's first 20 steps, then its own: the whole curve
    assert [v for _, _, v in rows(new, "train.loss")] == [v for _, _, v in rows(tmp / "full", "train.loss")]
    full_m = json.loads((tmp / "full/metrics.json").read_text())
    new_m = json.loads((new / "metrics.json").read_text())
    assert new_m["test.accuracy"] == full_m["test.accuracy"] and new_m["train.steps"] == 40
    assert (tmp / "killed/checkpoints/last.pt").is_file()  # the source run is left as it was


def test_resume_under_a_time_budget_keeps_the_clock(tmp_path):
    """Killed at step 30 of a 4-second budget (each batch takes 20 ms to load): the resumed run's clock starts
    where the checkpoint's stopped, and the whole run stops once 4 seconds have passed in all."""
    timed = ["task=dummy", "trainer.max_epochs=0", "trainer.max_minutes=0.0667", "data.collate_sleep=0.02",
             "trainer.checkpoint_every=10", "trainer.eval_every=1000", f"hydra.run.dir={tmp_path}"]
    killed = run_cli(*timed, "data.crash_at_call=35")
    assert killed.returncode == 3
    saved = load_checkpoint(tmp_path / "checkpoints/last.pt")["progress"]
    assert saved["step"] == 30 and 0.5 < saved["elapsed"] < 4.0
    resumed = run_cli(*timed, "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = [(step, t) for step, t, _ in rows(tmp_path, "train.loss") if step > 30]
    assert after and all(t >= saved["elapsed"] for _, t in after)  # the clock went on from the checkpoint
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 4.0 <= m["train.wall_seconds"] < 4.0 + 2.0  # one budget in all, not a fresh one after resuming
