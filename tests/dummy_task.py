"""A tiny task for testing the framework itself (not one of the four).

Linearly separable points -> 2 classes, an MLP with dropout. Hooks for failure tests:
``data.nan_at_call`` makes the N-th training loss NaN, ``data.inf_grad_at_call`` its gradient inf (the
loss stays finite), ``data.crash_at_call`` kills the process (``os._exit``) in the middle of the N-th
training step, ``data.collate_sleep`` makes every batch take that long to load, ``data.calls_file`` counts
each process's training steps in a file.
"""

import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnapps.config import RunConfig, TrainerConfig, opt
from attnapps.data.files import read_input
from attnapps.task import Reporter, Task, register_task


@dataclass
class DummyData:
    n: int = opt(320, "points (70% train, 15% valid, 15% test)")
    dim: int = opt(8, "dimensions of a point")
    nan_at_call: int = opt(0, "failure hook: the N-th training loss is NaN")
    crash_at_call: int = opt(0, "failure hook: os._exit in the N-th training step")
    inf_grad_at_call: int = opt(0, "failure hook: a finite loss whose gradient is inf")
    collate_sleep: float = opt(0.0, "seconds of 'data loading' per batch")
    calls_file: str = opt("", "test hook: write this process's count of training-loss calls to FILE.rank<RANK>")


@dataclass
class DummyModel:
    hidden: int = opt(16, "hidden units of the MLP")
    dropout: float = opt(0.1, "dropout probability")


@dataclass
class DummyPredict:
    input: str = opt("-", "file with one point per line (numbers separated by spaces), or - for stdin")
    scale: float = opt(1.0, "multiply the inputs by this")


@dataclass
class DummyConfig(RunConfig):
    task_name: str = "dummy"
    data: DummyData = field(default_factory=DummyData)
    model: DummyModel = field(default_factory=DummyModel)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=2, batch_size=16, warmup_steps=5, lr=1e-2, progress=False, log_every=1))


@register_task("dummy")
class DummyTask(Task, Reporter):
    config_class = DummyConfig
    predict_config_class = DummyPredict
    primary_metric = "accuracy"
    higher_is_better = True
    count_unit = "examples"
    study_presets = {"quick": ["trainer.max_steps=12", "trainer.warmup_steps=2"]}  # its own quick look

    calls, classes = 0, ("neg", "pos")  # training-loss calls (for the failure hooks); label names

    def build_data(self):
        d = self.cfg.data
        g = torch.Generator().manual_seed(0)
        x = torch.randn(d.n, d.dim, generator=g)
        y = (x @ torch.linspace(-1, 1, d.dim) > 0).long()
        items = list(zip(x, y))
        a, b = int(0.7 * d.n), int(0.85 * d.n)
        return {"train": items[:a], "valid": items[a:b], "test": items[b:]}

    def collate(self, examples):
        time.sleep(self.cfg.data.collate_sleep)
        xs, ys = zip(*examples)
        return {"x": torch.stack(xs), "y": torch.stack(ys)}

    def build_model(self):
        m = self.cfg.model
        return nn.Sequential(nn.Linear(self.cfg.data.dim, m.hidden), nn.ReLU(), nn.Dropout(m.dropout),
                             nn.Linear(m.hidden, 2))

    def loss(self, model, batch):
        loss = F.cross_entropy(model(batch["x"]), batch["y"], reduction="sum")
        if model.training:
            self.calls += 1
            if self.cfg.data.calls_file:
                with open(f"{self.cfg.data.calls_file}.rank{os.environ.get('RANK', '0')}", "w") as f:
                    f.write(str(self.calls))
            if self.calls == self.cfg.data.crash_at_call:
                os._exit(3)  # as abrupt as a kill: no cleanup, no finally blocks
            if self.calls == self.cfg.data.nan_at_call:
                loss = loss * float("nan")
            if self.calls == self.cfg.data.inf_grad_at_call:
                first = next(model.parameters())
                handle = first.register_hook(lambda g: (handle.remove(), g * float("inf"))[1])
        return loss, torch.tensor(len(batch["y"]))

    def evaluate(self, model, split, final=False):
        correct = total = 0
        for batch in self.batches(split):
            correct += int((model(batch["x"]).argmax(-1) == batch["y"]).sum())
            total += len(batch["y"])
        return {"accuracy": correct / max(total, 1)}

    def report(self, model, run_dir, results):
        return ["## Dummy section", "", f"classes: {', '.join(self.classes)}"]

    def predict(self, model, options):
        for line in read_input(options.input).splitlines():
            x = torch.tensor([float(v) * options.scale for v in line.split()])
            print(self.classes[int(model(x[None]).argmax(-1))])

    def state_dict(self):
        return {"classes": list(self.classes)}

    def load_state_dict(self, state):
        self.classes = list(state["classes"])
