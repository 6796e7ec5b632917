"""The one training loop every task uses.

AdamW with warmup + decay, gradient clipping and accumulation, optional bf16 autocast, evaluation
and early stopping on the task's primary metric, atomic checkpoints that resume to the same result,
a NaN guard, and DistributedDataParallel when launched by torchrun. Only rank 0 writes files.

Per update: the task returns ``(loss_sum, count)`` per batch; gradients are summed over the
accumulated batches and all processes and divided by the global count, so one update equals the
update of a single big batch whatever ``accumulate`` and the number of processes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from attnapps import provenance
from attnapps.config import plain
from attnapps.data.batching import BucketBatchSampler, to_device
from attnapps.errors import AttnappsError, ConfigError
from attnapps.training import distributed as dist
from attnapps.training.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from attnapps.training.schedules import lr_factor

LOG_FIELDS = ["step", "epoch", "elapsed_s", "key", "value"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available on this machine")
    return torch.device(name)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of the current epoch already consumed
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    elapsed: float = 0.0  # training wall seconds (loading, steps, logging, evaluation, checkpoints), all
    # segments of a resumed run together: what trainer.max_minutes budgets
    train_seconds: float = 0.0  # the same without evaluation and checkpoints (for throughput)
    items: float = 0.0  # loss items (tokens/examples) trained on
    skipped_steps: int = 0  # bf16: updates skipped because the loss or the gradient norm was not finite


class Trainer:
    """``Trainer(task, cfg, run_dir).run()`` -> final metrics (also written to ``metrics.json``)."""

    def __init__(self, task, cfg, run_dir: str | Path):
        self.task, self.cfg, self.tc = task, cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        type(task).check_config(cfg)  # the same checks as the command line, for runs built in Python
        self.device = pick_device(self.tc.device)
        self.dist = dist.setup(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        task._device = self.device
        task.budget_fraction = self.budget_fraction  # how far training is (a task may change its loss late)
        self.progress = Progress()
        self.writer = None
        self._last_saved_step = 0

    # ------------------------------------------------------------------ setup
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self):
        if self.tc.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _seed(self, seed: int) -> None:
        import random

        import numpy as np

        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def _build(self) -> None:
        self._seed(self.cfg.seed)  # the same initial weights on every rank
        if self.tc.threads > 0:
            torch.set_num_threads(self.tc.threads)
        resume = self._resume_path()
        self.resume_state = None
        if resume is not None:  # the tokenizer/vocabulary/labels come from the checkpoint, not a refit
            self.resume_state = load_checkpoint(resume, map_location=self.device)
            self.resume_path = resume
            if self.resume_state.get("task") != self.task.name:
                raise AttnappsError(f"{resume}: checkpoint is for task {self.resume_state.get('task')!r}, "
                                    f"not {self.task.name!r}")
            self.task.restore(self.resume_state["task_state"])
        provenance.start_recording()
        self.task.datasets = self.task.build_data()
        self.data_fingerprints = provenance.data_fingerprints()
        if self.resume_state is not None:
            self._check_same_data(self.resume_state.get("data", {}))
        train = self.task.datasets["train"]
        if len(train) == 0:
            raise AttnappsError("the training set is empty")
        if self.tc.batch_size < 1:
            raise ConfigError(f"trainer.batch_size={self.tc.batch_size}: must be at least 1")
        self.sampler = BucketBatchSampler(
            len(train), self.tc.batch_size, self.task.lengths("train"), self.tc.max_tokens, shuffle=True,
            seed=self.cfg.seed, rank=self.dist.rank, world_size=self.dist.world_size)
        self.model = self.task.build_model().to(self.device)
        if self.dist.rank > 0:  # dropout and sampling differ per rank; the weights are rank 0's (DDP broadcasts)
            self._seed(self.cfg.seed + 7919 * self.dist.rank)
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.tc.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        kwargs = dict(lr=self.tc.lr, betas=tuple(self.tc.betas))
        try:
            self.optimizer = torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.AdamW(groups, **kwargs)
        self.batches_per_epoch = len(self.sampler)
        self.steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / self.tc.accumulate))
        total = self.tc.max_steps or (self.tc.max_epochs * self.steps_per_epoch) or 10**9
        self.total_steps = total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = ({k: v.detach().float().clone() for k, v in self.model.state_dict().items()
                     if v.is_floating_point()} if self.tc.ema > 0 else None)
        self.ddp_model = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _check_same_data(self, saved: dict) -> None:
        changed = provenance.changed_data(saved, self.data_fingerprints) if saved else []
        if changed and not self.tc.resume_force:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise AttnappsError(f"trainer.resume: the data changed since the checkpoint: {changed[0]}{more}; "
                                "resume with the same data, or set trainer.resume_force=true")

    def _lr_factor(self, step: int) -> float:
        """LR multiplier. Under a time budget the decay follows whichever of time and steps (epochs)
        is further along, so a budgeted run anneals by the time it stops."""
        tc, fraction = self.tc, None
        if tc.max_minutes > 0:
            fraction = self.progress.elapsed / (60 * tc.max_minutes)
            if tc.max_steps or tc.max_epochs:
                fraction = max(fraction, step / max(1, self.total_steps))
        return lr_factor(step, tc.schedule, tc.warmup_steps, self.total_steps, tc.min_lr_ratio, fraction)

    def budget_fraction(self) -> float:
        """How far training is through its budget, 0..1: the further of time (``max_minutes``) and
        updates (``max_steps``, or ``max_epochs`` of updates); 0 without any limit."""
        tc, p = self.tc, self.progress
        fractions = [p.elapsed / (60 * tc.max_minutes)] if tc.max_minutes > 0 else []
        if tc.max_steps or tc.max_epochs:
            fractions.append(p.step / max(1, getattr(self, "total_steps", 1)))
        return min(1.0, max(fractions, default=0.0))

    # ------------------------------------------------------------------ checkpoints
    def _resume_path(self) -> Path | None:
        r = str(self.tc.resume).strip()
        if r.lower() in ("", "false", "no", "0", "none"):
            return None
        if r.lower() in ("true", "yes", "1"):
            path = self.ckpt_dir / "last.pt"
            if not path.is_file():
                raise AttnappsError(f"trainer.resume=true: {path} does not exist "
                                    "(point hydra.run.dir= at the run to resume, or trainer.resume= at it)")
            return path
        path = Path(r)
        if path.is_dir():
            path = path / "checkpoints" / "last.pt"
        if not path.is_file():
            raise AttnappsError(f"trainer.resume={r}: no checkpoint at {path}")
        return path

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "data": self.data_fingerprints,
            "progress": vars(self.progress).copy(), "config": plain(self.cfg),
            "task_state": self.task.state_dict(), "task": self.task.name, "ema": self.ema,
        }

    def save_last(self) -> None:
        """``checkpoints/last.pt``. Under DDP every rank takes part (each rank's RNG state is saved)."""
        ranks = dist.all_gather_object(rng_state()) if self.dist.enabled else None
        if self.is_main:
            self._check_finite_weights()
            state = self._state()
            if ranks is not None:
                state["rng_ranks"] = ranks
            atomic_save(state, self.ckpt_dir / "last.pt")
            self._last_saved_step = self.progress.step

    def _check_finite_weights(self) -> None:
        """A checkpoint never holds inf/NaN weights (the update guard should make this unreachable)."""
        bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise AttnappsError(f"non-finite weights in {bad[0]} at step {self.progress.step}: not written to "
                                f"a checkpoint (last good checkpoint: {self.ckpt_dir / 'last.pt'})")

    def save_best(self, metrics: dict) -> None:
        if self.is_main:
            self._check_finite_weights()
            atomic_save({"model": self.model.state_dict(), "config": plain(self.cfg),
                         "task_state": self.task.state_dict(), "task": self.task.name,
                         "step": self.progress.step, "metrics": metrics}, self.ckpt_dir / "best.pt")

    def _restore(self, path: Path) -> None:
        state = self.resume_state
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise AttnappsError(f"{path}: checkpoint does not fit this model config "
                                f"({str(e).splitlines()[0]})") from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("rng_ranks")
        saved_by = len(ranks) if ranks is not None else 1
        if saved_by != self.dist.world_size:
            raise AttnappsError(f"{path}: saved by {saved_by} process(es), resumed with {self.dist.world_size}: "
                                "resume with the same number of processes")
        rng = ranks[self.dist.rank] if ranks is not None else state["rng"]
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in rng.items()})
        self.progress = Progress(**state["progress"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema = {k: v.float() for k, v in state["ema"].items()}
        self.sampler.set_epoch(self.progress.epoch, self.progress.batch_in_epoch)
        if self.is_main:  # drop log rows written after the checkpoint by the killed run
            self._truncate_log(path)

    def _truncate_log(self, ckpt_path: Path) -> None:
        src = ckpt_path.parent.parent / "log.csv"
        dst = self.run_dir / "log.csv"
        if not src.is_file():
            return
        with open(src, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.progress.step]
        with open(dst, "w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    # ------------------------------------------------------------------ logging
    def log(self, values: dict) -> None:
        if not self.is_main:
            return
        p = self.progress
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(LOG_FIELDS)
            for k, v in values.items():
                w.writerow([p.step, p.epoch, f"{p.elapsed:.3f}", k, repr(float(v))])
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, float(v), p.step)

    def _open_tensorboard(self) -> None:
        if not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: optional
            return
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def eval_loss(self, split: str, max_batches: int = 0) -> float:
        self.model.eval()
        total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(self.task.batches(split)):
            if max_batches and i >= max_batches:
                break
            with self.autocast():
                loss_sum, n = self.task.loss(self.model, batch)
            total += float(loss_sum)
            count += float(n)
        return float(total / count.clamp(min=1))

    def evaluate(self, split: str, final: bool) -> dict:
        metrics = {"loss": self.eval_loss(split, 0 if final else self.tc.eval_max_batches)}
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics.update(self.task.evaluate(self.model, split, final=final))
        self.model.train()
        return {k: float(v) for k, v in metrics.items()}

    def _improved(self, value: float) -> bool:
        best = self.progress.best
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value > best if self.task.higher_is_better else value < best

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema = d * ema + (1 - d) * weights`` with ``d = min(ema, (1 + step) / (10 + step))``."""
        if self.ema is None:
            return
        d = min(self.tc.ema, (1 + self.progress.step) / (10 + self.progress.step))
        for k, v in self.model.state_dict().items():
            if k in self.ema:
                self.ema[k].mul_(d).add_(v.float(), alpha=1 - d)

    @contextlib.contextmanager
    def ema_weights(self):
        """Inside: the model holds the averaged weights (evaluation, best.pt); restored after."""
        if self.ema is None:
            yield
            return
        state = self.model.state_dict()
        backup = {k: state[k].clone() for k in self.ema}
        with torch.no_grad():
            for k, v in self.ema.items():
                state[k].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in backup.items():
                    state[k].copy_(v)

    def _eval_and_checkpoint(self) -> bool:
        """Validate, keep the best model, write last.pt; return True to stop early. Rank 0 evaluates and
        decides; the decision is broadcast, so the ranks cannot disagree (and hang)."""
        key, improved, value, metrics = self.task.primary_metric, False, None, {}
        if self.is_main:
            with self.ema_weights():
                metrics = self.evaluate("valid", final=False)
                if key not in metrics:
                    raise RuntimeError(f"task {self.task.name}: evaluate() returned no primary metric {key!r}")
                improved, value = self._improved(metrics[key]), metrics[key]
                if improved:
                    self.save_best(metrics)
            self.log({f"valid.{k}": v for k, v in metrics.items()})
        improved, value = dist.broadcast_object((improved, value))
        p = self.progress
        if improved:
            p.best, p.best_step, p.bad_evals = value, p.step, 0
        else:
            p.bad_evals += 1
        self.save_last()
        return self.tc.patience > 0 and p.bad_evals >= self.tc.patience

    # ------------------------------------------------------------------ training
    def _tick(self, train: bool) -> float:
        """Add the wall time since the last tick to the budget clock (and to the training time when
        ``train``): loading, host-to-device copies, steps, logging, evaluation all count."""
        now = time.perf_counter()
        dt, self._mark = now - self._mark, now
        self.progress.elapsed += dt
        if train:
            self.progress.train_seconds += dt
        return dt

    def _time_up(self) -> bool:
        if self.tc.max_minutes <= 0:
            return False
        if self.dist.enabled:  # one clock for all ranks (rank 0's): the same stop and the same time-based LR
            self.progress.elapsed = float(dist.broadcast_tensor(torch.tensor(self.progress.elapsed, dtype=torch.float64)))
        return self.progress.elapsed >= 60 * self.tc.max_minutes

    def _done(self) -> bool:
        p, tc = self.progress, self.tc
        return bool((tc.max_steps and p.step >= tc.max_steps) or (tc.max_epochs and p.epoch >= tc.max_epochs)
                    or self._time_up())

    def _non_finite(self, what: str) -> None:
        """A non-finite loss or gradient norm: never applied. fp32 stops the run (it will not recover);
        bf16 skips the update and counts it (a rare overflow of the low-precision range)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.tc.precision == "bf16":
            self.progress.skipped_steps += 1
            return
        last = self.ckpt_dir / "last.pt"
        hint = (f"last good checkpoint: {last} (step {self._last_saved_step})" if last.exists()
                else "no checkpoint was written yet")
        raise AttnappsError(f"non-finite {what} at step {self.progress.step + 1}; stopping, the weights were not "
                            f"updated ({hint}; try a lower trainer.lr or trainer.clip_grad_norm)")

    def train_step(self, batches: list) -> dict | None:
        """One optimizer update over ``batches`` (the accumulation group); None if it was skipped."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_total = torch.zeros((), dtype=torch.float64)
        count_total = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1
            ctx = self.ddp_model.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
            with ctx:
                with self.autocast():
                    loss_sum, n = self.task.loss(self.ddp_model, batch)
                loss_sum.float().backward()
            loss_total += loss_sum.detach().double().cpu()
            count_total += float(n)
        stats = dist.all_reduce_sum(torch.stack([loss_total, count_total]))
        loss_total, count_total = stats[0], stats[1]
        if not torch.isfinite(loss_total):
            return self._non_finite("training loss")
        # DDP averaged the gradient sums over processes; rescale to the global mean per item.
        scale = self.dist.world_size / float(count_total.clamp(min=1))
        grads = [p.grad for p in params if p.grad is not None]
        for g in grads:
            g.mul_(scale)
        # (every rank holds the same all-reduced gradients, so every rank takes the same decision)
        grad_norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0) if grads else torch.zeros(())
        if not torch.isfinite(grad_norm):
            return self._non_finite("gradient norm")
        if self.tc.clip_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.tc.clip_grad_norm, grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self._update_ema()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss_total / count_total.clamp(min=1)), "count": float(count_total),
                "grad_norm": float(grad_norm)}

    def _progress_bar(self):
        """Steps (or epochs of steps) done; under trainer.max_minutes, elapsed / budgeted seconds."""
        tc, p = self.tc, self.progress
        if not (tc.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        if tc.max_minutes > 0:
            return tqdm(total=round(60 * tc.max_minutes), initial=min(round(p.elapsed), round(60 * tc.max_minutes)),
                        unit="s", desc=f"train {self.task.name} (time budget)", dynamic_ncols=True,
                        mininterval=1.0, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")
        return tqdm(total=tc.max_steps or tc.max_epochs * self.steps_per_epoch or None, initial=p.step,
                    desc=f"train {self.task.name}", dynamic_ncols=True, mininterval=1.0)

    def fit(self) -> None:
        tc, p = self.tc, self.progress
        self._open_tensorboard()
        bar = self._progress_bar()
        self.model.train()
        # Its own generator: creating a DataLoader iterator draws a worker seed, which must not
        # consume the global RNG (dropout) or a resumed run would diverge from an uninterrupted one.
        loader = DataLoader(self.task.datasets["train"], batch_sampler=self.sampler, collate_fn=self.task.collate,
                            num_workers=tc.num_workers, generator=torch.Generator().manual_seed(self.cfg.seed))
        stop = False
        evaluated_at = -1
        self._mark = time.perf_counter()

        def advance_bar(seconds: float, out: dict) -> None:
            if bar is None:
                return
            bar.update(min(p.elapsed, bar.total) - bar.n if tc.max_minutes > 0 else 1)  # evaluation time too
            bar.set_postfix(loss=f"{out['loss']:.3f}", step=p.step, epoch=p.epoch, refresh=False,
                            **{f"{self.task.count_unit}/s": f"{out['count'] / max(seconds, 1e-9):.0f}"})

        def evaluate_now() -> bool:
            self._tick(train=True)
            result = self._eval_and_checkpoint()
            self._tick(train=False)
            return result

        while not stop and not self._done():
            self.sampler.set_epoch(p.epoch, p.batch_in_epoch)
            it = iter(loader)
            exhausted = False
            while not exhausted:
                group = []
                for _ in range(tc.accumulate):
                    try:
                        group.append(to_device(next(it), self.device))
                    except StopIteration:
                        exhausted = True
                        break
                if not group:
                    break
                out = self.train_step(group)
                p.batch_in_epoch += len(group)
                dt = self._tick(train=True)  # since the last tick: loading, copies, the step, last logging
                if out is not None:
                    p.step += 1
                    p.items += out["count"]
                    if p.step % tc.log_every == 0 or p.step == 1:
                        self.log({"train.loss": out["loss"], "train.lr": self.scheduler.get_last_lr()[0],
                                  "train.grad_norm": out["grad_norm"], "train.skipped_steps": p.skipped_steps,
                                  f"train.{self.task.count_unit}_per_sec": out["count"] / max(dt, 1e-9)})
                    advance_bar(dt, out)
                    if tc.eval_every and p.step % tc.eval_every == 0:
                        stop = evaluate_now()
                        evaluated_at = p.step
                    elif tc.checkpoint_every and p.step % tc.checkpoint_every == 0:
                        self._tick(train=True)
                        self.save_last()
                        self._tick(train=False)
                if stop or self._done():
                    stop = True
                    break
            if exhausted or not group:
                p.epoch += 1
                p.batch_in_epoch = 0
                if not tc.eval_every and not stop:
                    stop = evaluate_now()
                    evaluated_at = p.step
        if evaluated_at != p.step:
            evaluate_now()
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ the whole run
    def run(self) -> dict:
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._build()
        if self.resume_state is not None:
            self._restore(self.resume_path)
        elif self.is_main and (self.run_dir / "log.csv").exists():
            (self.run_dir / "log.csv").unlink()
        self.fit()
        dist.barrier()
        metrics = None
        if self.is_main:
            metrics = self.finish()
        if self.writer is not None:
            self.writer.close()
        dist.barrier()
        dist.teardown()
        return metrics

    def finish(self) -> dict:
        """Reload the best weights, evaluate valid and test in full, write metrics.json and the report."""
        best = self.ckpt_dir / "best.pt"
        if best.is_file():
            self.model.load_state_dict(load_checkpoint(best, map_location=self.device)["model"])
        p = self.progress
        metrics = {}
        for split in ("valid", "test"):
            if len(self.task.datasets.get(split, ())) > 0:
                metrics.update({f"{split}.{k}": v for k, v in self.evaluate(split, final=True).items()})
        metrics.update({
            "train.steps": p.step, "train.epochs": round(p.epoch + p.batch_in_epoch / max(1, self.batches_per_epoch), 4),
            "train.wall_seconds": round(p.elapsed, 3), "train.best_step": p.best_step,
            "train.skipped_steps": p.skipped_steps,
            f"train.{self.task.count_unit}_per_sec": p.items / max(p.train_seconds, 1e-9),
            "train.parameters": sum(q.numel() for q in self.model.parameters()),
        })
        metrics.update(self.task.extra_metrics(self.model))
        with open(self.run_dir / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
        prov = provenance.collect(self.device, self.data_fingerprints)
        with open(self.run_dir / "provenance.json", "w") as f:
            json.dump(prov, f, indent=2)
        from attnapps.report import write_report

        write_report(self.run_dir, self.cfg, metrics, self.task, self.model, provenance=prov)
        return metrics
