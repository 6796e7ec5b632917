"""The one training loop every task uses, composed of parts that each do one job:

* :class:`~attnapps.training.updater.Updater` -- one optimizer update (accumulation, DDP, non-finite guard)
* :mod:`~attnapps.training.evaluation` -- the loss and the task's metrics on a split
* :class:`~attnapps.training.clock.Budget` -- the clock and the time/step/epoch budget
* :class:`~attnapps.training.checkpoint.Checkpointer` -- atomic ``last.pt``/``best.pt``, resume paths
* :mod:`~attnapps.training.loggers` -- ``log.csv`` and the trackers (TensorBoard, W&B, MLflow)
* :class:`~attnapps.training.ema.EMA` -- the moving average of the weights
* :class:`~attnapps.training.swa.WeightAverage` -- what the budget left after early stopping is spent on
* :mod:`~attnapps.training.distributed` -- DDP under torchrun (rank 0 decides, the others follow)

:meth:`Trainer.run` returns a :class:`RunResult`; writing the
run's files (``metrics.json``, the report) is :mod:`attnapps.run`'s job.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from attnapps import provenance
from attnapps.data.prepared import describe as prepared_describe, prepared_metrics
from attnapps.config import plain
from attnapps.data.batching import BucketBatchSampler, to_device
from attnapps.errors import AttnappsError, ConfigError
from attnapps.layers.dropout import set_fast as set_fast_dropout
from attnapps.layers.output import set_bf16_output
from attnapps.task import Reporter
from attnapps.training import distributed as dist
from attnapps.training.allocator import keep_freed_memory
from attnapps.training.checkpoint import Checkpointer, check_same_data, load_checkpoint, rng_state
from attnapps.training.clock import Budget, Progress
from attnapps.training.ema import averaged, maybe_ema
from attnapps.training.evaluation import RunResult, evaluate_split, peak_memory_mb, run_diagnostics
from attnapps.training.loggers import build_loggers
from attnapps.training.precision import resolve_precision
from attnapps.training.schedules import lr_factor
from attnapps.training.swa import WeightAverage
from attnapps.training.updater import Updater, build_optimizer, seed_everything


class Trainer:
    """``Trainer(TaskClass, cfg, run_dir).run()`` -> :class:`RunResult`. The trainer builds the task
    with its device and a view of the budget (``task.budget_fraction()``)."""

    def __init__(self, task_cls, cfg, run_dir: str | Path):
        self.cfg, self.tc = cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        task_cls.check_config(cfg)  # the same checks as the command line, for runs built in Python
        self.device, self.dist = dist.setup_device(self.tc.device)
        self.progress = Progress()
        self.budget = Budget(self.tc, self.progress, synced=self.dist.enabled)
        self.checkpoints = Checkpointer(self.run_dir)
        self.loggers: list = []
        self.started = time.monotonic()  # train.first_update_seconds counts from here: reading data, building
        self.first_update: float | None = None  # the model, ... up to the end of the first update
        self.setup_seconds = 0.0  # from here to the first training step (time.setup_seconds)
        self.task = task_cls(cfg, device=self.device, budget=self.budget.fraction)

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self):
        if self.tc.precision in ("bf16", "fp16"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.tc.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        seed_everything(self.cfg.seed)  # the same initial weights on every rank
        if self.tc.keep_freed_memory:
            keep_freed_memory()
        set_fast_dropout(self.tc.fast_dropout)
        if self.tc.threads > 0:
            torch.set_num_threads(self.tc.threads)
        resume = self.tc.resume
        if dist.restart_count() > 0 and str(resume).strip().lower() in ("", "false", "no", "0", "none") \
                and self.checkpoints.last.is_file():
            resume = "true"  # torchrun restarted the workers after a failure: go on from the last checkpoint
        self.resume_path = self.checkpoints.resume_path(resume)
        self.resume_state = None
        if self.resume_path is not None:  # the tokenizer/vocabulary/labels come from the checkpoint, not a refit
            self.resume_state = load_checkpoint(self.resume_path, map_location=self.device)
            if self.resume_state.get("task") != self.task.name:
                raise AttnappsError(f"{self.resume_path}: checkpoint is for task {self.resume_state.get('task')!r}, "
                                    f"not {self.task.name!r}")
            self.task.load_state_dict(self.resume_state["task_state"])
        provenance.start_recording()
        datasets = self.task.load_data()
        self.data_fingerprints = provenance.data_fingerprints()
        if self.resume_state is not None:
            check_same_data(self.resume_state.get("data", {}), self.data_fingerprints, self.tc.resume_force)
        if len(datasets["train"]) == 0:
            raise AttnappsError("the training set is empty")
        if self.tc.batch_size < 1:
            raise ConfigError(f"trainer.batch_size={self.tc.batch_size}: must be at least 1")
        self.sampler = BucketBatchSampler(
            len(datasets["train"]), self.tc.batch_size, self.task.lengths("train"), self.tc.max_tokens, shuffle=True,
            seed=self.cfg.seed, rank=self.dist.rank, world_size=self.dist.world_size)
        self.model = self.task.build_model().to(self.device)
        self.tc.precision = resolve_precision(self.tc.precision, self.device, self.model)  # "auto" -> fp32 | bf16..
        if self.tc.precision == "bf16-output" and not set_bf16_output(self.model):
            raise ConfigError("trainer.precision=bf16-output: this model has no attnapps.layers.OutputLayer to run "
                              "in bf16 (use fp32, bf16 or auto)")
        if self.tc.compile:  # in place: the state dict keeps its keys, checkpoints load either way
            self.model.compile()
        if self.dist.rank > 0:  # dropout and sampling differ per rank; the weights are rank 0's (DDP broadcasts)
            seed_everything(self.cfg.seed + 7919 * self.dist.rank)
        self.optimizer = build_optimizer(self.model, self.tc)
        self.batches_per_epoch = len(self.sampler)
        self.steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / self.tc.accumulate))
        self.budget.total_steps = self.tc.max_steps or (self.tc.max_epochs * self.steps_per_epoch) or 10**9
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = maybe_ema(self.model, self.tc.ema)
        self.average: WeightAverage | None = None  # after early stopping (trainer.after_early_stop=average)
        self.updater = Updater(self.model, self.optimizer, self.scheduler, self.ema, self.tc, self.dist, self.progress,
                               self.task.loss, self.autocast, self.checkpoints.last_good)

    def _lr_factor(self, step: int) -> float:
        tc = self.tc
        if self.progress.averaging > 0:  # weight averaging after early stopping: the LR of the stop, held
            return self.progress.averaging
        return lr_factor(step, tc.schedule, tc.warmup_steps, self.budget.total_steps, tc.min_lr_ratio,
                         self.budget.schedule_fraction(step))

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(), "data": self.data_fingerprints,
            "progress": self.progress.state_dict(), "config": plain(self.cfg),
            "task_state": self.task.state_dict(), "task": self.task.name,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "average": self.average.state_dict() if self.average is not None else None,
            "scaler": self.updater.scaler.state_dict() if self.updater.scaler is not None else None,
        }

    def save_last(self) -> None:
        """``checkpoints/last.pt``. Under DDP every rank takes part (each rank's RNG state is saved)."""
        ranks = dist.all_gather_object(rng_state()) if self.dist.enabled else None
        if self.is_main:
            state = self._state()
            if ranks is not None:
                state["rng_ranks"] = ranks
            self.checkpoints.save_last(state, self.model, self.progress.step)

    def _best_state(self, metrics: dict) -> dict:
        """What ``best.pt`` (and a kept ``step_<update>.pt``) holds: the weights, config and task state."""
        return {"model": self.model.state_dict(), "config": plain(self.cfg), "task_state": self.task.state_dict(),
                "task": self.task.name, "step": self.progress.step, "metrics": metrics}

    def save_best(self, metrics: dict) -> None:
        self.checkpoints.save_best(self._best_state(metrics), self.model, self.progress.step)

    @property
    def keep(self) -> int:
        """How many evaluations' weights stay in ``checkpoints/step_*.pt``."""
        return max(self.tc.keep_last, self.tc.average_last if self.tc.average_last > 1 else 0)

    def average_last(self) -> dict:
        """``trainer.average_last=N``: the average of the last N kept weights (fewer if fewer were kept),
        evaluated on valid and kept as the best model when better there; ``checkpoints/average.pt`` either
        way. Its ``train.average_*`` metrics."""
        from attnapps.training.average import average_last, kept
        from attnapps.training.checkpoint import atomic_save

        n = min(self.tc.average_last, len(kept(self.checkpoints.dir)))
        if self.tc.average_last <= 1 or n < 2:
            return {}
        avg = average_last(self.checkpoints.dir, n)
        atomic_save(avg, self.checkpoints.dir / "average.pt")
        trained = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(avg["model"])
        metrics, _ = self.evaluate("valid", final=False)
        key = self.task.selection_metric
        better = self._improved(metrics[key])
        if better:
            self.progress.best = metrics[key]
            self.save_best(metrics)
        else:
            self.model.load_state_dict(trained)
        self.log({f"average.valid.{k}": v for k, v in metrics.items()})
        return {"train.average_last": n, f"train.average_last.valid.{key}": metrics[key],
                "train.average_kept": int(better)}

    def _restore(self) -> None:
        self.checkpoints.restore(self.resume_state, self.resume_path, self.model, self.optimizer, self.scheduler,
                                 self.ema, self.progress, self.dist)
        self.sampler.set_epoch(self.progress.epoch, self.progress.batch_in_epoch)
        if self.updater.scaler is not None and self.resume_state.get("scaler"):
            self.updater.scaler.load_state_dict(self.resume_state["scaler"])
        if self.progress.averaging > 0:
            self.average = WeightAverage(self.model)
            self.average.load_state_dict(self.resume_state["average"])

    # ------------------------------------------------------------------ logging and evaluation
    def log(self, values: dict) -> None:
        p = self.progress
        for logger in self.loggers:
            logger.log(p.step, p.epoch, p.elapsed, values)

    def evaluate(self, split: str, final: bool) -> tuple[dict, Any]:
        return evaluate_split(self.task, self.model, split, final, self.autocast,
                              0 if final else self.tc.eval_max_batches)

    def _improved(self, value: float) -> bool:
        best = self.progress.best
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value > best if self.task.higher_is_better else value < best

    def _eval_and_checkpoint(self) -> bool:
        """Validate, keep the best model, write last.pt; return True to stop early. Rank 0 evaluates and
        decides; the decision is broadcast, so the ranks cannot disagree (and hang)."""
        key, improved, value = self.task.selection_metric, False, None
        phase, spent = self.task.training_phase(), self.budget.fraction()
        if self.average is not None:  # every rank keeps the same average (the weights are the same)
            self.average.update()
        if self.is_main:
            with averaged(self.average or self.ema):  # the weights that would be kept
                metrics, _ = self.evaluate("valid", final=False)
                if key not in metrics:
                    raise RuntimeError(f"task {self.task.name}: evaluate() returned no metric {key!r} to select by")
                improved, value = self._improved(metrics[key]), metrics[key]
                if improved:
                    self.save_best(metrics)
                if self.keep > 0:  # the raw weights of this evaluation, for averaging the last N
                    self.checkpoints.save_kept(self._best_state(metrics), self.model, self.progress.step, self.keep)
            self.log({f"valid.{k}": v for k, v in metrics.items()})
        improved, value, phase, spent = dist.broadcast_object((improved, value, phase, spent))
        p = self.progress
        if phase != p.phase:  # a new phase of training gets its own patience
            p.phase, p.bad_evals = phase, 0
        if improved:
            p.best, p.best_step, p.bad_evals = value, p.step, 0
            p.best_averaged = self.average.n if self.average is not None else 0
        else:
            p.bad_evals += 1
        if (self.tc.patience > 0 and p.bad_evals >= self.tc.patience and spent >= self.tc.patience_after
                and p.averaging <= 0):  # weights are averaged to the end of the budget
            p.stop = "patience"
        self.save_last()
        return p.stop == "patience"

    # ------------------------------------------------------------------ training
    def train_step(self, batches: list) -> dict | None:
        """One optimizer update over ``batches`` (the accumulation group); None if it was skipped."""
        return self.updater.step(batches)

    def _progress_bar(self):
        """Steps (or epochs of steps) done; under trainer.max_minutes, elapsed / budgeted seconds."""
        from attnapps.training.progress import progress_bar

        if not (self.tc.progress and self.is_main):
            return None
        return progress_bar(self.tc, self.progress, self.task.name, self.steps_per_epoch)

    def _groups(self, it):
        """Accumulation groups of batches on the device; the last may be short."""
        while True:
            group = []
            for _ in range(self.tc.accumulate):
                try:
                    group.append(to_device(next(it), self.device))
                except StopIteration:
                    if group:
                        yield group
                    return
            yield group

    def _after_step(self, out: dict, dt: float, bar) -> bool:
        """Log, evaluate or checkpoint when due; return True to stop early."""
        p, tc = self.progress, self.tc
        p.step += 1
        p.items += out["count"]
        if self.first_update is None:  # this process's first update: the cost of starting (data, model)
            self.first_update = time.monotonic() - self.started
        if p.step % tc.log_every == 0 or p.step == 1:
            self.log({"train.loss": out["loss"], "train.lr": self.scheduler.get_last_lr()[0],
                      "train.grad_norm": out["grad_norm"], "train.skipped_steps": p.skipped_steps,
                      f"train.{self.task.count_unit}_per_sec": out["count"] / max(dt, 1e-9),
                      f"train.{self.task.count_unit}_seen": p.items})  # with `elapsed`: throughput over any window
        if bar is not None:
            bar.advance(out, dt, self.task.count_unit)
        if tc.eval_every and p.step % tc.eval_every == 0:
            return self._timed(self._eval_and_checkpoint)
        if tc.checkpoint_every and p.step % tc.checkpoint_every == 0:
            self._timed(self.save_last)
        return False

    def _timed(self, work):
        """Run ``work`` (evaluation, checkpoints) on the budget clock but outside the training time."""
        self.budget.tick(train=True)
        result = work()
        self.budget.tick(train=False)
        return result

    def fit(self) -> None:
        """Train until the budget is spent or early stopping; then, with budget left, average weights
        (``trainer.after_early_stop``). A resumed run goes on in the phase it was saved in."""
        tc, p = self.tc, self.progress
        bar = self._progress_bar()
        self.model.train()
        # Its own generator: creating a DataLoader iterator draws a worker seed, which must not
        # consume the global RNG (dropout) or a resumed run would diverge from an uninterrupted one.
        loader = DataLoader(self.task.datasets["train"], batch_sampler=self.sampler, collate_fn=self.task.train_collate,
                            num_workers=tc.num_workers, generator=torch.Generator().manual_seed(self.cfg.seed),
                            pin_memory=self.device.type == "cuda")
        self.budget.start()
        self.setup_seconds = time.monotonic() - self.started
        if not p.stop:
            self._train(loader, bar)
        if self._start_averaging():
            self._train(loader, bar)
        p.stop = p.stop or self.budget.reason()
        if bar is not None:
            bar.close()

    def _train(self, loader, bar) -> None:
        """Updates until the budget is spent or early stopping (``progress.stop``), then a last evaluation."""
        tc, p = self.tc, self.progress
        stop, evaluated_at = False, -1
        while not stop and not self.budget.done():
            self.sampler.set_epoch(p.epoch, p.batch_in_epoch)
            finished_epoch = True
            for group in self._groups(iter(loader)):
                out = self.train_step(group)
                p.batch_in_epoch += len(group)
                dt = self.budget.tick(train=True)  # since the last tick: loading, copies, the step, last logging
                if out is not None:
                    stop = self._after_step(out, dt, bar)
                    if tc.eval_every and p.step % tc.eval_every == 0:
                        evaluated_at = p.step
                if stop or self.budget.done():
                    stop, finished_epoch = True, len(group) < tc.accumulate  # a short group: the data ran out
                    break
            if finished_epoch:
                p.epoch += 1
                p.batch_in_epoch = 0
                if not tc.eval_every and not stop:
                    stop = self._timed(self._eval_and_checkpoint)
                    evaluated_at = p.step
        if evaluated_at != p.step and (p.averaging <= 0 or p.step > p.early_stop_step):
            self._timed(self._eval_and_checkpoint)

    def _start_averaging(self) -> bool:
        """After early stopping with budget left: go on from the best weights at the LR of the stop, held
        constant, and average the weights at each evaluation (:mod:`attnapps.training.swa`)."""
        p, tc = self.progress, self.tc
        if tc.after_early_stop != "average" or p.stop != "patience" or p.averaging > 0 \
                or not self.budget.limited or self.budget.done():  # without a budget nothing is left over
            return False
        best = None
        if self.is_main and self.checkpoints.best.is_file():
            best = load_checkpoint(self.checkpoints.best, map_location="cpu")["model"]
        best = dist.broadcast_object(best)
        if best is None:
            return False
        self.model.load_state_dict(best)
        factor = self.scheduler.get_last_lr()[0] / max(self.scheduler.base_lrs[0], 1e-12)
        p.averaging = max(factor, tc.min_lr_ratio, 1e-3)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * p.averaging
        p.early_stop_step, p.best_before_average = p.step, p.best
        p.stop, p.bad_evals = "", 0
        self.average = WeightAverage(self.model)  # the best weights are its first member
        return True

    def describe_stop(self) -> str:
        """One sentence for the report: how much of the budget training used, and why it ended."""
        p, tc, key = self.progress, self.tc, self.task.selection_metric
        limits = ([f"{tc.max_minutes:g} minutes"] if tc.max_minutes > 0 else []) + (
            [f"{tc.max_steps} updates"] if tc.max_steps else []) + ([f"{tc.max_epochs} epochs"] if tc.max_epochs else [])
        used = (f"used {self.budget.fraction():.0%} of its budget ({' / '.join(limits)}): " if limits
                else "had no budget: ")
        used += f"{p.elapsed:.0f} s, {p.step} updates, best valid {key} at update {p.best_step}; "
        at = f" at update {p.early_stop_step}" if p.averaging > 0 else ""
        early = (f"stopped early{at}: no better valid {key} in {tc.patience} evaluations"
                 + (f" (allowed once {tc.patience_after:.0%} of the budget was spent, "
                    "`trainer.patience_after`)" if tc.patience_after > 0 and limits else ""))
        ended = {"time": "ran to the end of its time budget", "steps": "ran to `trainer.max_steps`",
                 "epochs": "ran to `trainer.max_epochs`"}.get(p.stop, "ended (" + (p.stop or "no limit") + ")")
        if p.averaging <= 0:
            return "Training " + used + (early if p.stop == "patience" else ended) + "."
        kept = (f"the average of {p.best_averaged} weights was better on valid ({key} {p.best:.4g} vs "
                f"{p.best_before_average:.4g}) and is the model kept" if p.best_averaged
                else f"no average was better on valid than the best model ({key} {p.best:.4g}), which is kept")
        return ("Training " + used + early + "; the rest of the budget averaged weights (SWA, "
                f"`trainer.after_early_stop=average`: from the best weights at a constant LR, "
                f"{p.step - p.early_stop_step} updates): {kept}; " + ended + ".")

    # ------------------------------------------------------------------ the whole run
    def run(self) -> RunResult | None:
        """Build, resume or start fresh, train, and (rank 0) evaluate the best model in full."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._build()
        if self.is_main:  # after the task chose its "auto" values from the data: the config the model was built from
            OmegaConf.save(self.cfg, self.run_dir / "config.yaml", resolve=True)
            self.loggers = build_loggers(self.run_dir, list(self.tc.loggers), self.cfg)
            if self.resume_state is not None:  # drop log rows written after the checkpoint by the killed run
                self.loggers[0].resume_from(self.resume_path.parent.parent / "log.csv", self.resume_state["progress"]["step"])
            else:
                self.loggers[0].start_fresh()
        if self.resume_state is not None:
            self._restore()
        self.fit()
        dist.barrier()
        averaged_metrics = self.average_last() if self.is_main else {}
        final_start = time.monotonic()
        result = self.final_evaluation() if self.is_main else None
        if result is not None:
            result.metrics.update(averaged_metrics)
            result.metrics.update(self.time_split(time.monotonic() - final_start))
            result.loggers = self.loggers  # closed once the run's files are written (attnapps.run.train)
        dist.barrier()
        dist.teardown()
        return result

    def time_split(self, final_seconds: float) -> dict:
        """Where this run's wall time went (``time.*`` in ``metrics.json``): before the first step (data,
        model), training steps (their batches and logging included), evaluation and checkpoints while
        training, and the final evaluation; ``time.outside_steps_share`` is the share of the first three's
        total not spent in training steps (the final evaluation comes after the budget)."""
        p = self.progress
        during = max(0.0, p.elapsed - p.train_seconds)
        spent = self.setup_seconds + p.elapsed
        return {"time.setup_seconds": round(self.setup_seconds, 3), "time.train_steps_seconds": round(p.train_seconds, 3),
                "time.eval_seconds": round(during, 3), "time.final_eval_seconds": round(final_seconds, 3),
                "time.outside_steps_share": round((self.setup_seconds + during) / max(spent, 1e-9), 4)}

    def final_evaluation(self) -> RunResult:
        """Reload the best weights, with the task state saved beside them (what the task chose on valid at
        that evaluation), and evaluate valid and test in full. What the task chooses on valid in this
        evaluation (e.g. how to decode) is part of its state afterwards: it is written back beside the best
        weights, so predicting and serving from ``best.pt`` decode as the test split was decoded."""
        best = None
        if self.checkpoints.best.is_file():
            best = load_checkpoint(self.checkpoints.best, map_location=self.device)
            self.model.load_state_dict(best["model"])
            self.task.load_state_dict(best["task_state"])
        p = self.progress
        metrics, results = {}, {}
        self.task.outputs_dir = self.run_dir  # outputs (hypotheses) written as they come
        for split in ("valid", "test"):
            if len(self.task.datasets.get(split, ())) > 0:
                split_metrics, results[split] = self.evaluate(split, final=True)
                metrics.update({f"{split}.{k}": v for k, v in split_metrics.items()})
        if best is not None:
            best["task_state"] = self.task.state_dict()
            self.checkpoints.save_best(best, self.model, best.get("step", p.step))
        metrics.update({
            "train.steps": p.step, "train.epochs": round(p.epoch + p.batch_in_epoch / max(1, self.batches_per_epoch), 4),
            "train.wall_seconds": round(p.elapsed, 3), "train.best_step": p.best_step,
            "train.skipped_steps": p.skipped_steps, "train.budget_used": round(self.budget.fraction(), 4),
            **({"train.first_update_seconds": round(self.first_update, 3)} if self.first_update is not None else {}),
            **prepared_metrics(self.task.prepared_info),
            "train.stopped_early": int(p.stop == "patience" or p.averaging > 0),
            "train.averaged_weights": p.best_averaged,
            **({"train.valid_before_average": p.best_before_average} if p.averaging > 0 else {}),
            f"train.{self.task.count_unit}_per_sec": p.items / max(p.train_seconds, 1e-9),
            "train.parameters": sum(q.numel() for q in self.model.parameters()),
            "train.peak_memory_mb": peak_memory_mb(self.device)})
        if isinstance(self.task, Reporter):
            metrics.update({f"trivial.test.{k}": v for k, v in self.task.trivial_baseline("test").items()})
            metrics.update(self.task.extra_metrics(self.model))
        metrics.update(run_diagnostics(self.task, self.model, self.cfg, p.elapsed))
        results["run"] = metrics  # the report may cite any final number
        results["training"] = {"stop": self.describe_stop(),
                               "data": prepared_describe(self.task.prepared_info)}
        return RunResult(metrics, results, self.task, self.model, self.data_fingerprints, self.device)
