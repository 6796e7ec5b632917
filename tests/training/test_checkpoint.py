"""Atomic checkpoints and resume-after-kill, with real process deaths."""

import csv
import subprocess
import sys
import textwrap

import pytest
import torch

from attnapps.errors import AttnappsError
from attnapps.training import atomic_save, load_checkpoint
from tests.conftest import ROOT, run_cli


def test_atomic_save_survives_kill_during_write(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"w": torch.ones(3)}, path)
    script = textwrap.dedent(f"""
        import os, torch
        from attnapps.training import checkpoint
        real_save = torch.save
        def dying_save(obj, f):
            f.write(b"partial bytes of a checkpoint")
            f.flush()
            os._exit(9)  # killed in the middle of writing
        checkpoint.torch.save = dying_save
        checkpoint.atomic_save({{"w": torch.zeros(1000)}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT)
    assert proc.returncode == 9
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))  # old checkpoint intact


def test_load_rejects_garbage_and_unsafe_pickles(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AttnappsError, match="bad.pt: cannot load checkpoint"):
        load_checkpoint(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(AttnappsError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def log_rows(run_dir):
    with open(run_dir / "log.csv") as f:
        return [(r["step"], r["key"], r["value"]) for r in csv.DictReader(f)
                if not r["key"].endswith("_per_sec")]  # timings differ; every loss/metric must not


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(tmp_path):
    common = ["task=dummy", "trainer.max_epochs=0", "trainer.max_steps=40", "trainer.checkpoint_every=10",
              "trainer.eval_every=15"]
    full = run_cli(*common, f"hydra.run.dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr
    killed = run_cli(*common, "data.crash_at_call=27", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert killed.returncode == 3  # died in step 27; last.pt is from step 20
    assert load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["progress"]["step"] == 20
    resumed = run_cli(*common, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_fp16_resume_restores_the_loss_scale(tmp_path):
    """An overflow at update 13 halved the scale before last.pt (update 20): the resumed run goes on
    with that scale and its growth count, and ends as the uninterrupted run. (The hooks count the calls of
    each process: the resumed one, 10 updates, reaches neither again.)"""
    common = ["task=dummy", "trainer.precision=fp16", "data.inf_grad_at_call=13", "trainer.max_epochs=0",
              "trainer.max_steps=30", "trainer.checkpoint_every=10", "trainer.eval_every=15"]
    full = run_cli(*common, f"hydra.run.dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr
    killed = run_cli(*common, "data.crash_at_call=27", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert killed.returncode == 3
    assert load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["scaler"]["scale"] == 128.0
    resumed = run_cli(*common, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert a["scaler"] == b["scaler"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_resume_while_averaging_weights_equals_uninterrupted(tmp_path):
    # early stopping at update 16 (see test_trainer), then weight averaging to update 60; killed in update 37
    common = ["task=dummy", "trainer.max_epochs=0", "trainer.max_steps=60", "trainer.eval_every=2",
              "trainer.patience=2", "trainer.patience_after=0", "trainer.checkpoint_every=10"]
    full = run_cli(*common, f"hydra.run.dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr
    killed = run_cli(*common, "data.crash_at_call=37", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert killed.returncode == 3
    last = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert last["progress"]["step"] == 36 and last["progress"]["averaging"] > 0 and last["average"]["n"] == 11
    resumed = run_cli(*common, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "full")
    for name in ("best", "last"):
        a = load_checkpoint(tmp_path / f"full/checkpoints/{name}.pt")["model"]
        b = load_checkpoint(tmp_path / f"resumed/checkpoints/{name}.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    r = run_cli("task=dummy", "trainer.resume=true", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2 and "last.pt does not exist" in r.stderr and "Traceback" not in r.stderr
