"""The smallest complete task: the largest digit of a sequence ("3 9 1 4" -> 9). A learned query attends
over the digits; trained, its attention lands on the largest. ``ATTNAPPS_TASKS=tests.fifth_task``."""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnapps.attention import build_attention, record
from attnapps.config import AttentionVariant, RunConfig, TrainerConfig, at_least, opt
from attnapps.explorer import example, view
from attnapps.task import Explainer, Task, register_task


@dataclass
class LargestData:
    n: int = opt(3000, "sequences of 2..8 digits: 80% train, 10% valid, 10% test", check=at_least(10))


@dataclass
class LargestModel:
    attention: AttentionVariant = opt("general", "attention variant (any core variant)")
    size: int = opt(32, "embedding size", check=at_least(4))


@dataclass
class LargestConfig(RunConfig):
    task_name: str = "largest"
    data: LargestData = field(default_factory=LargestData)
    model: LargestModel = field(default_factory=LargestModel)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=4, lr=1e-2, warmup_steps=10))


class AttentionPool(nn.Module):
    def __init__(self, m: LargestModel):
        super().__init__()
        self.embed, self.query = nn.Embedding(11, m.size, padding_idx=10), nn.Parameter(torch.randn(1, 1, m.size))
        self.attend, self.out = build_attention(str(m.attention), m.size, heads=4), nn.Linear(m.size, 10)

    def forward(self, digits):  # (batch, len), 10 = padding -> logits (batch, 10)
        query, keys = self.query.expand(len(digits), 1, -1), self.embed(digits)  # (batch, 1, size), (batch, len, size)
        context, _ = self.attend(query, keys, mask=digits != 10)  # (batch, 1, size)
        return self.out(context.squeeze(1))


@register_task("largest")
class LargestTask(Task, Explainer):
    config_class, primary_metric, higher_is_better = LargestConfig, "accuracy", True

    def build_data(self):
        g, n = torch.Generator().manual_seed(0), self.cfg.data.n
        seqs = [torch.randint(0, 10, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g) for _ in range(n)]
        return {"train": seqs[:n * 8 // 10], "valid": seqs[n * 8 // 10:n * 9 // 10], "test": seqs[n * 9 // 10:]}

    def collate(self, seqs):
        return {"digits": nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=10),
                "largest": torch.stack([s.max() if len(s) else torch.tensor(0) for s in seqs])}

    def build_model(self):
        return AttentionPool(self.cfg.model)

    def loss(self, model, batch):
        return F.cross_entropy(model(batch["digits"]), batch["largest"], reduction="sum"), len(batch["largest"])

    def evaluate(self, model, split, final=False):
        right = sum(int((model(b["digits"]).argmax(-1) == b["largest"]).sum()) for b in self.batches(split))
        return {"accuracy": right / len(self.datasets[split])}

    def infer(self, model, inputs, options):  # texts -> explained outputs (attnapps.serve, predict, report.html)
        seqs = [torch.tensor([int(c) for c in text if c.isdigit()], dtype=torch.long) for text in inputs]
        with record(model) as maps:
            best = model(self.collate(seqs)["digits"].to(self.device)).argmax(-1)  # (batch,)
        return [example({"output": [str(int(b))], "input": [str(int(x)) for x in s]},
                        [view("attention", "output", "input", w[:, :, :len(s)])], text=str(int(b)))
                for s, b, w in zip(seqs, best, maps["attend"])]  # w: (heads, 1, len)

    def explore(self, model, results, n):
        return self.infer(model, [" ".join(map(str, s.tolist())) for s in self.datasets["test"][:n]], None)
