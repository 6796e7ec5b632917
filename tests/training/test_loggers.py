"""trainer.loggers: the trackers receive the config, each logged value, the final metrics and the report,
through their own libraries; one that fails is a warning line, not a failed run."""

from __future__ import annotations

import csv
import json
import time

import pytest
from omegaconf import OmegaConf

from attnapps.training import loggers as loggers_module


def tiny_run(root, *keys):
    from attnapps.run import train
    from attnapps_tasks.generation.task import GenerationTask

    (root / "data").mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        (root / "data" / f"{split}.txt").write_text("the cat sat on the mat. " * 40)
    cfg = OmegaConf.merge(OmegaConf.structured(GenerationTask.config_class), OmegaConf.from_dotlist([
        f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}", "model.arch=transformer",
        "model.context=16", "model.d_model=16", "model.layers=1", "model.heads=2", "trainer.max_epochs=0",
        "trainer.max_steps=20", "trainer.eval_every=10", "trainer.log_every=5", "trainer.batch_size=4",
        "trainer.progress=false", "trainer.max_minutes=0", "diag.examples=0", "explorer.examples=0",
        "sample.max_new_tokens=8", *keys]))
    return root / "run", train(cfg, root / "run", GenerationTask)


def logged(run, key):
    with open(run / "log.csv", newline="") as f:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["key"] == key]


@pytest.mark.slow
def test_mlflow_file_store_gets_config_steps_final_metrics_and_report(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, metrics = tiny_run(tmp_path, "trainer.loggers=[csv,mlflow]")
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("attnapps")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.data.params["trainer.max_steps"] == "20"
    history = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "train.loss")]
    expected = logged(run, "train.loss")  # every row log.csv has, at its update
    assert [s for s, _ in sorted(history)] == [s for s, _ in expected] and len(expected) >= 4
    assert [v for _, v in sorted(history)] == pytest.approx([v for _, v in expected], rel=1e-6)
    valid = client.get_metric_history(found.info.run_id, "valid.bpc")  # two evaluations, then the final value
    assert [m.step for m in valid] == [10, 20, 20] and valid[-1].value == pytest.approx(metrics["valid.bpc"])
    assert found.data.metrics["test.bpc"] == pytest.approx(metrics["test.bpc"])
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"report.md", "metrics.json", "plots"} <= files
    assert json.loads((run / "metrics.json").read_text())["test.bpc"] == pytest.approx(metrics["test.bpc"])


@pytest.mark.slow
def test_wandb_offline_run_holds_the_values_and_the_report(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run, metrics = tiny_run(tmp_path, "trainer.loggers=[csv,wandb]")
    (offline,) = (run / "wandb").glob("offline-run-*")  # offline by default: nothing leaves the machine
    (records,) = offline.glob("run-*.wandb")
    data, deadline = records.read_bytes(), time.monotonic() + 30
    while b"test.bpc" not in data and time.monotonic() < deadline:  # wandb's service process may still be
        time.sleep(0.5)  # flushing its records after finish() returned (seen once under CI's load)
        data = records.read_bytes()
    for key in (b"train.loss", b"valid.bpc", b"test.bpc", b"trainer", b"max_steps", b"plots/learning_curves"):
        assert key in data, key
    assert json.dumps(metrics["test.bpc"]).encode() in data  # the final value, as the summary's JSON
    assert (offline / "files" / "report.md").read_text() == (run / "report.md").read_text()


class Broken:
    def __init__(self, run_dir, cfg=None):
        raise RuntimeError("no tracking server at http://nowhere\nsecond line")


class FailsLater:
    calls = 0

    def __init__(self, run_dir, cfg=None):
        pass

    def log(self, *args):
        FailsLater.calls += 1
        raise OSError("disk quota exceeded")

    def close(self):
        pass


def test_a_tracker_that_fails_is_one_warning_line_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(loggers_module.TRACKERS, "wandb", Broken)
    monkeypatch.setitem(loggers_module.TRACKERS, "mlflow", FailsLater)
    run, metrics = tiny_run(tmp_path, "trainer.loggers=[csv,wandb,mlflow]")
    err = [line for line in capsys.readouterr().err.splitlines() if "trainer.loggers" in line]
    assert err == ["warning: trainer.loggers: wandb did not start (RuntimeError: no tracking server at "
                   "http://nowhere); the run goes on without it",
                   "warning: trainer.loggers: mlflow failed in log (OSError: disk quota exceeded); the run goes on "
                   "without it"]
    assert FailsLater.calls == 1 and metrics["train.steps"] == 20 and logged(run, "train.loss")


def test_a_tracker_not_installed_names_its_extra(tmp_path, capsys, monkeypatch):
    class Missing:
        def __init__(self, run_dir, cfg=None):
            raise ImportError("No module named 'tensorboard'")
    monkeypatch.setitem(loggers_module.TRACKERS, "tensorboard", Missing)
    built = loggers_module.build_loggers(tmp_path, ["csv", "tensorboard"])
    assert len(built) == 1
    assert capsys.readouterr().err.strip() == ("warning: trainer.loggers: tensorboard did not start (pip install "
                                               "'attnapps[tensorboard]'); the run goes on without it")


def test_unknown_tracker_is_a_config_error():
    from attnapps.config import check_rules, field_rules
    from attnapps.config import TrainerConfig
    from attnapps.errors import ConfigError

    cfg = OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"loggers": ["csv", "comet"]})
    with pytest.raises(ConfigError, match="loggers"):
        check_rules(cfg, field_rules(TrainerConfig))
