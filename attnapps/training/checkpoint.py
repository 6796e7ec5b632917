"""Checkpoints: written atomically (temp file, fsync, rename), loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from attnapps.errors import AttnappsError


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then ``os.replace``: a reader (or a
    run killed mid-save) sees the old complete file or the new complete file, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint safely (no arbitrary code: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise AttnappsError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holds unsafe objects
        raise AttnappsError(f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from e


def rng_state() -> dict:
    """Every RNG a training step may draw from, in weights_only-safe types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """``run_dir/checkpoints``: ``last.pt`` (everything a resume needs) and ``best.pt`` (the model to
    evaluate, report and predict with). Refuses to write non-finite weights."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir) / "checkpoints"
        self.last_saved_step = 0

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def resume_path(self, resume: str) -> Path | None:
        """``trainer.resume``: false | true (this run's ``last.pt``) | a run directory | a ``.pt`` file."""
        r = str(resume).strip()
        if r.lower() in ("", "false", "no", "0", "none"):
            return None
        if r.lower() in ("true", "yes", "1"):
            if not self.last.is_file():
                raise AttnappsError(f"trainer.resume=true: {self.last} does not exist "
                                    "(point hydra.run.dir= at the run to resume, or trainer.resume= at it)")
            return self.last
        path = Path(r)
        if path.is_dir():
            path = path / "checkpoints" / "last.pt"
        if not path.is_file():
            raise AttnappsError(f"trainer.resume={r}: no checkpoint at {path}")
        return path

    def check_finite(self, model: torch.nn.Module, step: int) -> None:
        """A checkpoint never holds inf/NaN weights (the update guard should make this unreachable)."""
        bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise AttnappsError(f"non-finite weights in {bad[0]} at step {step}: not written to "
                                f"a checkpoint (last good checkpoint: {self.last})")

    def save_last(self, state: dict, model: torch.nn.Module, step: int) -> None:
        self.check_finite(model, step)
        atomic_save(state, self.last)
        self.last_saved_step = step

    def save_best(self, state: dict, model: torch.nn.Module, step: int) -> None:
        self.check_finite(model, step)
        atomic_save(state, self.best)

    def save_kept(self, state: dict, model: torch.nn.Module, step: int, keep: int) -> None:
        """``checkpoints/step_<update>.pt`` (``trainer.keep_last``); only the newest ``keep`` stay."""
        from attnapps.training.average import kept_path, prune

        self.check_finite(model, step)
        atomic_save(state, kept_path(self.dir, step))
        prune(self.dir, keep)

    def last_good(self) -> str:
        """For an error message: where the last good checkpoint is, if any."""
        return (f"last good checkpoint: {self.last} (step {self.last_saved_step})" if self.last.exists()
                else "no checkpoint was written yet")

    def restore(self, state: dict, path: Path, model, optimizer, scheduler, ema, progress, dist_info) -> None:
        """Resume: weights, optimizer, schedule, this rank's RNG streams, progress and the averaged weights."""
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise AttnappsError(f"{path}: checkpoint does not fit this model config "
                                f"({str(e).splitlines()[0]})") from e
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("rng_ranks")
        saved_by = len(ranks) if ranks is not None else 1
        if saved_by != dist_info.world_size:
            raise AttnappsError(f"{path}: saved by {saved_by} process(es), resumed with {dist_info.world_size}: "
                                "resume with the same number of processes")
        rng = ranks[dist_info.rank] if ranks is not None else state["rng"]
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in rng.items()})
        progress.load_state_dict(state["progress"])
        from attnapps.training.average import prune

        if dist_info.rank == 0:  # kept weights a killed run wrote after this checkpoint
            prune(self.dir, 10**9, after=progress.step)
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])


def check_same_data(saved: dict, now: dict, force: bool) -> None:
    """Resume refuses data whose content changed since the checkpoint (``trainer.resume_force=true`` allows it)."""
    from attnapps import provenance

    changed = provenance.changed_data(saved, now) if saved else []
    if changed and not force:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise AttnappsError(f"trainer.resume: the data changed since the checkpoint: {changed[0]}{more}; "
                            "resume with the same data, or set trainer.resume_force=true")
