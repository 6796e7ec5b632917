"""A search with Hydra's Optuna sweeper: ``python -m attnapps.run -m ... hydra/sweeper=optuna``, the task's
primary valid metric as the objective (what the run's Hydra function returns)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


@pytest.mark.slow
def test_optuna_search_minimises_the_valid_metric(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"{split}.txt").write_text("the cat sat on the mat. the dog sat on the log. " * 20)
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "task=generation", f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}",
                "model.arch=transformer", "model.context=16", "model.d_model=16", "model.layers=1", "model.heads=2",
                "trainer.max_epochs=0", "trainer.max_steps=15", "trainer.max_minutes=0", "trainer.progress=false",
                "diag.examples=0", "explorer.examples=0", "sample.max_new_tokens=4",
                "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0",
                "trainer.lr=tag(log, interval(0.0003, 0.03))", f"hydra.sweep.dir={sweep}", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(trials) == 3
    lrs = [yaml.safe_load((t / "config.yaml").read_text())["trainer"]["lr"] for t in trials]
    assert len(set(lrs)) == 3 and all(3e-4 <= lr <= 3e-2 for lr in lrs)  # drawn from the interval, log scale
    bpc = [json.loads((t / "metrics.json").read_text())["valid.bpc"] for t in trials]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(min(bpc), rel=1e-6)  # the objective: the primary valid metric
    assert result["best_params"]["trainer.lr"] == pytest.approx(lrs[bpc.index(min(bpc))], rel=1e-9)


def test_an_interval_is_checked_at_both_ends_before_any_run():
    r = run_cli("-m", "task=generation", "hydra/sweeper=optuna", "model.dropout=interval(0.1, 1.5)")
    assert r.returncode == 2 and "model.dropout" in r.stderr and len(r.stderr.strip().splitlines()) == 1
