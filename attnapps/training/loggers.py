"""Where training metrics go (``trainer.loggers``): ``log.csv`` (one row per value, long format), always, and
the trackers people use -- TensorBoard, Weights & Biases, MLflow -- each through its own library, an optional
extra. Only rank 0 logs. A tracker that cannot start, or fails later, is one warning line: the run goes on."""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

LOG_FIELDS = ["step", "epoch", "elapsed_s", "key", "value"]


class CSVLogger:
    """``run_dir/log.csv`` with :data:`LOG_FIELDS`, appended to as training goes."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "log.csv"

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(LOG_FIELDS)
            for k, v in values.items():
                w.writerow([step, epoch, f"{elapsed:.3f}", k, repr(float(v))])

    def start_fresh(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def resume_from(self, source: Path, step: int) -> None:
        """Keep the rows of ``source`` (the resumed run's log) up to ``step``: a killed run's rows written
        after its checkpoint are dropped."""
        if not Path(source).is_file():
            return
        with open(source, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars to ``run_dir/tensorboard`` (``torch.utils.tensorboard``; the ``tensorboard`` package)."""

    def __init__(self, run_dir: Path, cfg=None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self.step = 0

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        self.step = step
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"final/{k}", float(v), self.step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """Weights & Biases through its own API (``wandb.init`` / ``log`` / ``summary`` / ``finish``): the config,
    every logged value at its update, the final metrics as the run's summary, ``report.md`` and
    ``report.html`` as files and ``plots/*.png`` as images. Offline (``run_dir/wandb``, ``wandb sync`` uploads
    it later) unless ``WANDB_MODE`` says otherwise; ``WANDB_PROJECT`` names the project (default attnapps)."""

    def __init__(self, run_dir: Path, cfg=None):
        import wandb

        from attnapps.config import plain

        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb, self.step = wandb, 0
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "attnapps"), name=Path(run_dir).name,
                              dir=str(run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                              config=plain(cfg) if cfg is not None else None)

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        self.step = max(self.step, step)
        self.run.log({**{k: float(v) for k, v in values.items()}, "epoch": epoch}, step=self.step)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        self.run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        for name in ("report.md", "report.html", "metrics.json"):
            if (Path(run_dir) / name).is_file():
                self.run.save(str(Path(run_dir) / name), base_path=str(run_dir), policy="now")
        images = {f"plots/{p.stem}": self.wandb.Image(str(p)) for p in sorted((Path(run_dir) / "plots").glob("*.png"))}
        if images:
            self.run.log(images, step=self.step)

    def close(self) -> None:
        self.run.finish()


class MLflowLogger:
    """MLflow through its client API (``MlflowClient``): the config as params, every logged value as a metric
    at its update, the final metrics, ``report.md`` / ``report.html`` / ``metrics.json`` and ``plots/`` as
    artifacts. Where: ``MLFLOW_TRACKING_URI`` if set, else a file store in ``run_dir/mlruns`` (MLflow keeps its
    file store in maintenance mode; ``MLFLOW_ALLOW_FILE_STORE=true`` is set for it); ``MLFLOW_EXPERIMENT_NAME``
    names the experiment (default attnapps)."""

    def __init__(self, run_dir: Path, cfg=None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from attnapps.config import plain

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir) / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "attnapps")
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment, run_name=Path(run_dir).name).info.run_id
        self.step = 0
        params = [Param(k, str(v)[:500]) for k, v in flatten(plain(cfg)).items()] if cfg is not None else []
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if isinstance(v, (int, float))]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        self.step = max(self.step, step)
        self._metrics(values, step)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        self._metrics(metrics, self.step)
        for name in ("report.md", "report.html", "metrics.json", "config.yaml"):
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        if (Path(run_dir) / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(Path(run_dir) / "plots"), "plots")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def flatten(tree, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the config's keys as the command line writes them)."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


TRACKERS = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MLflowLogger}


class Guarded:
    """A tracker whose failures are one warning line each (the first), never a failed run: after one
    failure it stops logging."""

    def __init__(self, name: str, logger):
        self.name, self.logger, self.failed = name, logger, False

    def _call(self, what: str, *args) -> None:
        if self.failed:
            return
        try:
            getattr(self.logger, what)(*args)
        except Exception as e:  # a tracker's own error: the run goes on
            self.failed = True
            warn(f"trainer.loggers: {self.name} failed in {what} ({type(e).__name__}: "
                 f"{(str(e).splitlines() or [''])[0][:200]}); the run goes on without it")

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        self._call("log", step, epoch, elapsed, values)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        self._call("finish", metrics, run_dir)

    def close(self) -> None:
        self._call("close")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_loggers(run_dir: Path, names=("csv",), cfg=None) -> list:
    """The CSV log always, then each tracker of ``names`` (``trainer.loggers``) that starts: one that cannot
    (not installed, no access) is a warning line and is left out."""
    loggers: list = [CSVLogger(run_dir)]
    for name in dict.fromkeys(names):
        if name == "csv":
            continue
        try:
            loggers.append(Guarded(name, TRACKERS[name](run_dir, cfg)))
        except Exception as e:  # ImportError (the extra not installed) or the tracker's own error
            hint = f"pip install 'attnapps[{name}]'" if isinstance(e, ImportError) else f"{type(e).__name__}: " + \
                (str(e).splitlines() or [""])[0][:200]
            warn(f"trainer.loggers: {name} did not start ({hint}); the run goes on without it")
    return loggers


def finish_loggers(loggers: list, metrics: dict, run_dir: Path) -> None:
    """After the run's files are written: the final metrics, report and plots to each tracker; then close."""
    for logger in loggers:
        if hasattr(logger, "finish"):
            logger.finish(metrics, run_dir)
        logger.close()
