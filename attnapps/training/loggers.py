"""Where training metrics go: ``log.csv`` (one row per value, long format) and, when the package is
installed, TensorBoard. Only rank 0 logs."""

from __future__ import annotations

import csv
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
    """Scalars to ``run_dir/tensorboard`` (``torch.utils.tensorboard``; optional)."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, epoch: int, elapsed: float, values: dict) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        self.writer.close()


def build_loggers(run_dir: Path) -> list:
    """The CSV log always; TensorBoard when ``tensorboard`` is installed."""
    loggers: list = [CSVLogger(run_dir)]
    try:
        loggers.append(TensorBoardLogger(run_dir))
    except Exception:  # tensorboard not installed: optional
        pass
    return loggers
