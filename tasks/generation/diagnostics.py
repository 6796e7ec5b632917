"""What the language model's attention explains (:mod:`attnapps.diagnostics`): for the next token after a
test passage (the model's own choice), the attention of the last position over the passage, that
token's probability with a passage token removed or with the attention permuted, and input x gradient
on the token embeddings. Attention: the LSTM's self-attention; the GPT's last layer, heads averaged."""

from __future__ import annotations

import torch

from attnapps.diagnostics import EmbeddingGrad, ModelProbe


def probes(task, model, indices: list[int]) -> list[ModelProbe]:
    device, length = task.device, min(task.cfg.sample.heatmap_tokens, task.cfg.model.context)
    modules = model.explained_attention()

    def run(ids: list[int]) -> torch.Tensor:
        return torch.softmax(model(torch.tensor([ids], device=device))[0, -1].float(), -1)  # (vocab,)

    out = []
    for i in indices:
        ids = task.datasets["test"][i][:length].tolist()
        maps = model.attention_maps(torch.tensor([ids], device=device))  # (layers, heads, len, len)
        target = int(run(ids).argmax())

        def saliency(ids=ids, target=target):
            grad = EmbeddingGrad(model.embedding)
            with grad, torch.enable_grad():
                logits = model(torch.tensor([ids], device=device))
                torch.log_softmax(logits[0, -1].float(), -1)[target].backward()
            return grad.saliency(0)[0].cpu()

        out.append(ModelProbe(ids, run, maps[-1].mean(0)[-1].cpu(), target, modules, saliency))
    return out
