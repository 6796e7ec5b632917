"""Checkpoint averaging: trainer.keep_last / trainer.average_last and python -m attnapps.average."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.average import main as average_main
from attnapps.errors import AttnappsError
from attnapps.training.average import average_states, kept, kept_path, prune
from attnapps.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    from attnapps.run import train
    from attnapps_tasks.generation.task import GenerationTask

    root = tmp_path_factory.mktemp("average")
    (root / "data").mkdir()
    text = "the cat sat on the mat. the dog sat on the log. " * 30
    for split in ("train", "valid", "test"):
        (root / "data" / f"{split}.txt").write_text(text)
    cfg = OmegaConf.merge(OmegaConf.structured(GenerationTask.config_class), OmegaConf.from_dotlist([
        f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}", "model.arch=transformer", "model.context=32",
        "model.d_model=32", "model.layers=1", "model.heads=2", "trainer.max_epochs=0", "trainer.max_steps=50",
        "trainer.eval_every=10", "trainer.batch_size=8", "trainer.lr=1e-2", "trainer.keep_last=4",
        "trainer.average_last=3", "trainer.progress=false", "trainer.max_minutes=0", "diag.examples=0",
        "explorer.examples=0"]))
    metrics = train(cfg, root / "run", GenerationTask)
    return root / "run", metrics


def test_keep_last_keeps_the_newest_evaluations(averaged_run):
    run, _ = averaged_run
    assert [p.name for p in kept(run / "checkpoints")] == [f"step_000000{s}.pt" for s in (20, 30, 40, 50)]
    assert load_checkpoint(kept(run / "checkpoints")[-1])["step"] == 50


def test_average_last_is_the_mean_and_is_kept_only_when_better(averaged_run):
    run, metrics = averaged_run
    files = kept(run / "checkpoints")[-3:]
    avg = load_checkpoint(run / "checkpoints" / "average.pt")
    assert avg["averaged_steps"] == [30, 40, 50]
    states = [load_checkpoint(f)["model"] for f in files]
    names = [k for k, v in avg["model"].items() if v.is_floating_point()]
    assert len(names) > 5
    for name in names:
        mean = torch.stack([s[name] for s in states]).mean(0)
        assert torch.allclose(avg["model"][name], mean, atol=1e-6), name
    assert not torch.equal(states[0][names[0]], states[-1][names[0]])  # the weights did move between them
    assert metrics["train.average_last"] == 3 and metrics["train.average_kept"] in (0, 1)
    best = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    same = all(torch.equal(best[k], avg["model"][k]) for k in best)
    assert same == bool(metrics["train.average_kept"])
    key = "train.average_last.valid.bpc"  # generation selects by bits per character, lower is better
    if metrics["train.average_kept"]:
        assert metrics[key] == pytest.approx(metrics["valid.bpc"], rel=1e-4)
    else:
        assert metrics[key] >= metrics["valid.bpc"] - 1e-9


def test_average_command_writes_the_mean_and_compares_on_valid(averaged_run, capsys):
    run, _ = averaged_run
    assert average_main([f"run={run}", "last=2"]) == 0
    out = capsys.readouterr().out
    files = kept(run / "checkpoints")[-2:]
    written = load_checkpoint(run / "checkpoints" / "average_last2.pt")
    expected = average_states([load_checkpoint(f)["model"] for f in files])
    assert all(torch.equal(written["model"][k], expected[k]) for k in expected)
    assert "updates 40, 50" in out and "| best.pt (update" in out and "| average of the last 2 |" in out
    assert average_main([f"run={run}", "last=9"]) == 2
    assert "4 kept checkpoints (step_*.pt), 9 asked for" in capsys.readouterr().err
    assert average_main([f"run={run}", "last=1"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_average_states_known_values_and_mismatch():
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "n": torch.tensor(1)}
    b = {"w": torch.tensor([2.0, 4.0], dtype=torch.float16), "n": torch.tensor(2)}
    c = {"w": torch.tensor([6.0, 0.0], dtype=torch.float16), "n": torch.tensor(3)}
    avg = average_states([a, b, c])
    assert avg["w"].dtype == torch.float16 and avg["w"].tolist() == [3.0, 2.0] and int(avg["n"]) == 3
    with pytest.raises(AttnappsError, match="do not hold the same weights"):
        average_states([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])


def test_prune_keeps_the_newest_and_drops_what_came_after_a_resume(tmp_path):
    for step in (5, 10, 15, 20, 25):
        torch.save({}, kept_path(tmp_path, step))
    prune(tmp_path, 10, after=15)  # resumed from update 15: 20 and 25 were written by the killed run
    assert [p.name for p in kept(tmp_path)] == ["step_00000005.pt", "step_00000010.pt", "step_00000015.pt"]
    prune(tmp_path, 2)
    assert [p.name for p in kept(tmp_path)] == ["step_00000010.pt", "step_00000015.pt"]
