"""What the captioner's attention over the image explains (:mod:`attnapps.diagnostics`): per generated
word of a test image (greedy), its attention over the regions, its probability with a region's features
zeroed or with the region attention permuted (teacher-forcing the same caption), and feature x gradient
of each region."""

from __future__ import annotations

import torch

from attnapps.data.vocab import BOS
from attnapps.diagnostics import ModelProbe

from .memory import collate_memory


WORDS = 8  # explained words per caption (the first ones)


class Caption:
    """One test image and the caption the model wrote for it, teacher-forced again under erasures."""

    def __init__(self, task, model, example, tokens: list[int]):
        self.model, self.device, self.regions = model, task.device, task.regions()
        self.modules = model.explained_attention()
        with torch.no_grad():
            self.feats = model.images(task.store[example[0]].unsqueeze(0).to(self.device)).float()  # (1, R, C)
        memory = collate_memory([example[2]]) if model.reads_memory else {}
        self.memory = {k: v.to(self.device) for k, v in memory.items()}
        self.cap_in = torch.tensor([[BOS] + tokens], device=self.device)  # (1, T + 1)
        self.owner = torch.zeros(1, dtype=torch.long, device=self.device)
        self.cache: dict = {}

    def log_probs(self, feats: torch.Tensor) -> torch.Tensor:
        logits, _ = self.model(feats, self.cap_in, self.owner, **self.memory)
        return torch.log_softmax(logits[0].float(), -1)  # (T + 1, vocab)

    def forced(self, kept: list[int]) -> torch.Tensor:
        """Log-probabilities at every caption position with only the ``kept`` regions' features."""
        key = (tuple(kept), id(self.modules[0].intervention))  # one pass per erasure and per permutation
        if key not in self.cache:
            keep = torch.zeros(1, self.regions, 1, device=self.device)
            keep[0, kept] = 1.0
            self.cache[key] = self.log_probs(self.feats * keep)
        return self.cache[key]

    def saliency(self, t: int, y: int) -> torch.Tensor:
        x = self.feats.clone().requires_grad_(True)
        with torch.enable_grad():
            self.log_probs(x)[t, y].backward()
        return (x * x.grad).sum(-1)[0].detach().cpu()  # (R,)


def probes(task, model, indices: list[int]) -> list[ModelProbe]:
    out = []
    for i in indices:
        example = task.datasets["test"][i]
        hyp = task.decode_images(model, [example])
        tokens, att = hyp.tokens[0], hyp.attention[0]
        if not tokens or att is None:
            continue
        case = Caption(task, model, example, tokens)
        for t, y in list(enumerate(tokens))[:WORDS]:
            out.append(ModelProbe(list(range(case.regions)), lambda kept, t=t, case=case: case.forced(kept)[t].exp(),
                                  att[t, : case.regions].cpu(), y, case.modules,
                                  lambda t=t, y=y, case=case: case.saliency(t, y), group=i))
    return out
