"""A loaded run and how requests reach its model: one at a time (``batching=lock``) or gathered into
micro-batches by one worker thread per run (``batching=batch``); ``auto`` batches the tasks whose
``infer`` runs its inputs as one batch (``Task.infer_batches``) and locks the others.

Either way a model runs one forward pass at a time -- the attention recorder
(:func:`attnapps.attention.record`) keeps state on the model's modules -- so correctness under
concurrent requests does not depend on PyTorch's thread-safety. Micro-batching gathers the inputs of
the requests that arrive within ``batch_window_ms`` (same options, at most ``max_batch`` inputs) into
one ``Task.infer`` call and hands each request its own outputs back.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from attnapps.errors import ConfigError


class RequestError(Exception):
    """A bad request: answered ``status`` with ``{"error": {"status", "message"}}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _Job:
    inputs: list
    options: Any
    key: tuple
    future: Future = field(default_factory=Future)


class LoadedRun:
    """A run directory's task and best model, loaded once, with its request queue."""

    def __init__(self, run_id: str, run_dir: Path, task, model, batching: str = "auto", window_ms: float = 5.0,
                 max_batch: int = 16):
        self.id, self.dir, self.task, self.model = run_id, Path(run_dir), task, model
        if batching == "auto":  # measured (scripts/bench_serve.py): batching pays where infer batches
            batching = "batch" if task.infer_batches else "lock"
        self.batching, self.window, self.max_batch = batching, window_ms / 1000.0, max_batch
        metrics = self.dir / "metrics.json"
        if not metrics.is_file() and self.dir.parent.name == "export":  # an export inside its run directory
            metrics = self.dir.parent.parent / "metrics.json"
        import json

        self.metrics = json.loads(metrics.read_text()) if metrics.is_file() else {}
        from attnapps.predict import predict_options

        defaults = predict_options(task, {})  # the run's own decoding settings where the task says so
        self.defaults = {k: defaults[k] for k in task.serve_options}
        self.lock = threading.Lock()
        self.calls = self.batched_inputs = 0  # model calls and the inputs they carried (for the benchmark)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = None
        if batching == "batch":
            self._worker = threading.Thread(target=self._serve_batches, name=f"attnapps-{run_id}", daemon=True)
            self._worker.start()

    # -- options -----------------------------------------------------------------------------------
    def options(self, given: dict, server_config):
        """The task's predict options with a request's values (``attnapps.predict.predict_options``, only
        ``serve_options`` allowed) and this server's caps (``Task.serve_limits``: option -> the server key
        holding its largest value): unknown names and bad values -> 422."""
        from attnapps.predict import predict_options

        for k, v in given.items():
            if isinstance(v, (dict, list)) or v is None:
                raise RequestError(422, f"option '{k}': expected a single value, got {type(v).__name__}")
        try:
            options = predict_options(self.task, given, allowed=self.defaults, what="option")
        except ConfigError as e:
            raise RequestError(422, str(e)) from None
        for option, key in self.task.serve_limits.items():
            limit = getattr(server_config, key)
            if option in self.defaults and options[option] > limit:
                raise RequestError(422, f"option '{option}': {options[option]} is over this server's limit of "
                                        f"{limit} ({key})")
        return options

    # -- inference ---------------------------------------------------------------------------------
    def infer(self, inputs: list, options, timeout: float) -> list[dict]:
        """Explained outputs of ``inputs``, in order; waits at most ``timeout`` s for the model (503)."""
        if self._worker is None:
            if not self.lock.acquire(timeout=timeout):
                raise RequestError(503, f"run {self.id} is busy: no model slot within {timeout:g} s")
            try:
                return self._call(inputs, options)
            finally:
                self.lock.release()
        job = _Job(inputs, options, tuple(sorted(OmegaConf.to_container(options).items())) if options else ())
        self._queue.put(job)
        try:
            return job.future.result(timeout=timeout)
        except TimeoutError:
            raise RequestError(503, f"run {self.id} is busy: no answer within {timeout:g} s") from None

    def _call(self, inputs: list, options) -> list[dict]:
        self.calls += 1
        self.batched_inputs += len(inputs)
        with torch.no_grad():
            return self.task.infer(self.model, inputs, options)

    def _serve_batches(self) -> None:
        pending: list[_Job] = []
        while True:
            job = pending.pop(0) if pending else self._queue.get()
            if job is None:
                return
            batch, n, deadline = [job], len(job.inputs), time.monotonic() + self.window
            while n < self.max_batch:  # gather what arrives within the window, same options only
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                if more.key == job.key and n + len(more.inputs) <= self.max_batch:
                    batch.append(more)
                    n += len(more.inputs)
                else:
                    pending.append(more)
            try:
                with self.lock:
                    outputs = self._call([x for b in batch for x in b.inputs], job.options)
            except Exception as e:  # the requests get the error; the worker lives on
                for b in batch:
                    b.future.set_exception(e)
                continue
            start = 0
            for b in batch:
                b.future.set_result(outputs[start: start + len(b.inputs)])
                start += len(b.inputs)

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=5)

    def describe(self) -> dict:
        return {"id": self.id, "task": self.task.name, "dir": str(self.dir), "input": self.task.serve_input,
                "options": {k: (v if not isinstance(v, float) else float(v)) for k, v in self.defaults.items()},
                "metrics": {k: v for k, v in self.metrics.items() if k.startswith(("test.", "valid."))},
                "stats": {"model_calls": self.calls, "inputs": self.batched_inputs, "batching": self.batching}}


def load_runs(dirs: list[str], device: str = "cpu", batching: str = "auto", window_ms: float = 5.0,
              max_batch: int = 16) -> dict[str, LoadedRun]:
    """``{run id: LoadedRun}``; ids are the directories' names (made unique with ``-2``, ``-3``, ...)."""
    from attnapps.errors import AttnappsError
    from attnapps.predict import load_run
    from attnapps.task import Explainer

    runs: dict[str, LoadedRun] = {}
    for d in dirs:
        task, model = load_run(d, device=device)
        if not isinstance(task, Explainer):
            raise AttnappsError(f"run={d}: task {task.name} explains no outputs (it is no attnapps.task.Explainer), "
                                "so there is nothing to serve")
        where = Path(d).resolve()  # an export (RUN/export/FORMAT) is named RUN-FORMAT
        base = (f"{where.parent.parent.name}-{where.name}" if where.parent.name == "export" else where.name) or "run"
        run_id, k = base, 1
        while run_id in runs:
            k += 1
            run_id = f"{base}-{k}"
        runs[run_id] = LoadedRun(run_id, Path(d), task, model, batching, window_ms, max_batch)
    return runs
