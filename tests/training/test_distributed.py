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
def test_two_process_ddp_with_sparse_tables_matches_single_process(tmp_path):
    """The n-gram classifier's lookup tables give sparse gradients (row-wise AdamW): DDP all-reduces them
    and the two processes train as one process with the same global batch."""
    from tests.test_scripts_smoke import reviews

    data = reviews(tmp_path / "data", n=(96, 32, 32))
    args = ["task=classification", f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}",
            "model.arch=ngram_attention", "model.dropout=0", "model.tfidf=off", "model.embed_size=16",
            "trainer.batch_size=16", "trainer.max_epochs=2", "trainer.lr=1e-2", "diag.examples=0",
            "explorer.examples=0"]
    ddp = run_cli("--standalone", "--nproc_per_node=2", "-m", "attnapps.run", *args,
                  f"hydra.run.dir={tmp_path / 'ddp'}", module="torch.distributed.run", timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = run_cli(*args, f"hydra.run.dir={tmp_path / 'single'}", timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = train_losses(tmp_path / "ddp"), train_losses(tmp_path / "single")
    assert len(a) == len(b) > 0 and a[-1] < a[0]
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_through_c10d_rendezvous_match_one_process(tmp_path):
    """Two torchrun "nodes" (one process each) meeting at a c10d rendezvous train exactly as one process
    with the same global batch -- the multi-node launch, on one machine."""
    import concurrent.futures

    args = ["-m", "attnapps.run", "task=dummy", "model.dropout=0", "trainer.batch_size=16", "trainer.max_epochs=2",
            f"hydra.run.dir={tmp_path / 'nodes'}"]
    port = free_port()
    node = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
            "--rdzv-id=two-nodes"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_cli(*node, *args, module="torch.distributed.run", timeout=240), (0, 1)))
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    single = run_cli(*args[2:-1], f"hydra.run.dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr
    assert train_losses(tmp_path / "nodes") == pytest.approx(train_losses(tmp_path / "single"), rel=1e-5, abs=1e-6)
    ma = json.loads((tmp_path / "nodes/metrics.json").read_text())
    mb = json.loads((tmp_path / "single/metrics.json").read_text())
    assert ma["test.accuracy"] == mb["test.accuracy"] and ma["train.steps"] == mb["train.steps"] == 28


@pytest.mark.slow
def test_elastic_restart_resumes_from_the_last_checkpoint_by_itself(tmp_path):
    """Under ``torchrun --max-restarts=1`` a worker killed in step 27 is restarted with its group, which
    finds ``last.pt`` (step 20) in the first attempt's run directory -- the default one, a timestamp, read
    from rank 0's note -- and ends exactly as the uninterrupted run."""
    common = ["--standalone", "--nproc_per_node=2", "-m", "attnapps.run", "task=dummy", "model.dropout=0.3",
              "trainer.max_epochs=0", "trainer.max_steps=40", "trainer.checkpoint_every=10", "trainer.eval_every=15"]
    full = run_cli(*common, f"hydra.run.dir={tmp_path / 'full'}", module="torch.distributed.run")
    assert full.returncode == 0, full.stderr[-2000:]
    (tmp_path / "elastic").mkdir()
    elastic = run_cli("--max-restarts=1", *common, "data.crash_at_call=27", f"data.calls_file={tmp_path / 'calls'}",
                      module="torch.distributed.run", cwd=tmp_path / "elastic", timeout=240,
                      env_extra={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})  # (PyTorch #135712, below)
    assert elastic.returncode == 0, elastic.stderr[-3000:]
    run_dirs = [p.parent for p in (tmp_path / "elastic/runs").glob("*/*/metrics.json")]
    assert len(run_dirs) == 1 and len(list((tmp_path / "elastic/runs").glob("*/*"))) == 1  # one run, one dir
    assert "exitcode: 3" in elastic.stderr  # the first attempt died (os._exit(3)) and torchrun restarted it
    # the second attempt made 20 updates per rank: it went on from step 20, not from the start
    assert [int((tmp_path / f"calls.rank{r}").read_text()) for r in (0, 1)] == [20, 20]
    assert train_losses(run_dirs[0]) == train_losses(tmp_path / "full")
    a = json.loads((tmp_path / "full/metrics.json").read_text())
    b = json.loads((run_dirs[0] / "metrics.json").read_text())
    assert b["train.steps"] == 40 and b["test.accuracy"] == a["test.accuracy"]


@pytest.mark.slow
def test_restarts_over_a_shared_rendezvous_store_are_warned_about(tmp_path):
    """With torchrun's store shared with the workers (its default) a restarted group can read the previous
    attempt's addresses and fail to connect (PyTorch #135712; 2 of 4 restarts here): rank 0 says so, once,
    with the variable that avoids it -- and says nothing when it is set."""
    common = ["--max-restarts=1", "--standalone", "--nproc_per_node=2", "-m", "attnapps.run", "task=dummy",
              "trainer.max_epochs=0", "trainer.max_steps=2"]
    shared = run_cli(*common, f"hydra.run.dir={tmp_path / 'a'}", module="torch.distributed.run")
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert shared.stderr.count("TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1") == 1
    own = run_cli(*common, f"hydra.run.dir={tmp_path / 'b'}", module="torch.distributed.run",
                  env_extra={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    assert own.returncode == 0 and "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in own.stderr
