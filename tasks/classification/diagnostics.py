"""What the classifier's attention explains (:mod:`attnapps.diagnostics`): per test text, the attention
each token received, the predicted class's probability with a token removed, with the attention
permuted across the tokens, and input x gradient on the token embeddings."""

from __future__ import annotations

from contextlib import ExitStack

import torch

from attnapps.diagnostics import EmbeddingGrad, ModelProbe

from .model import Ensemble


def members(model) -> list:
    return list(model.members) if isinstance(model, Ensemble) else [model]


def probes(task, model, indices: list[int]) -> list[ModelProbe]:
    device = task.device

    def run(ids: list[int]) -> torch.Tensor:
        logits, _ = model(torch.tensor([ids], device=device), torch.tensor([len(ids)], device=device))
        return task.probabilities(logits)[0]  # (classes,)

    out = []
    for i in indices:
        ids = task.datasets["test"][i][0]
        with torch.no_grad():
            logits, w = model(torch.tensor([ids], device=device), torch.tensor([len(ids)], device=device))
        target = int(task.probabilities(logits)[0].argmax())

        def saliency(ids=ids, target=target):
            if any(m.reads_sentences for m in members(model)):
                return torch.full((len(ids),), float("nan"))  # its embeddings are of a sentence grid
            with ExitStack() as stack, torch.enable_grad():
                grads = [stack.enter_context(EmbeddingGrad(m.embedding)) for m in members(model)]
                torch.log(run(ids)[target]).backward()
            return sum(g.saliency()[0, : len(ids)] for g in grads).cpu()

        out.append(ModelProbe(ids, run, w[0, : len(ids)].cpu(), target, model.explained_attention(), saliency))
    return out
