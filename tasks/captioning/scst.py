"""Self-critical sequence training (Rennie et al. 2017) with the mean of the other samples as the
baseline (Luo 2020, "A Better Variant of Self-Critical Sequence Training")."""

from __future__ import annotations

import torch

from attnapps.data.vocab import BOS, EOS
from attnapps.decoding import reorder_state

from .retrieval import ConsensusScorer


def scst_loss(model, batch: dict, samples: int, max_len: int, scorer: ConsensusScorer):
    """Sample ``samples`` captions per image, reward each with its CIDEr-D against the image's references
    (``scorer``: document frequencies from the training captions), and return
    ``-sum (reward - baseline) * log P(sample)`` over the samples, and their count."""
    n = samples
    memory = {k: batch[k] for k in ("memory", "memory_rank") if k in batch}
    state = model.encode(batch["images"], **memory)
    images = batch["images"].size(0)
    state = reorder_state(state, torch.arange(images, device=batch["images"].device).repeat_interleave(n))
    tokens = torch.full((images * n,), BOS, dtype=torch.long, device=batch["images"].device)
    alive = torch.ones_like(tokens, dtype=torch.bool)
    log_p = torch.zeros(images * n, device=tokens.device)
    steps = []
    for _ in range(max_len):
        lp, state = model.step(tokens, state)  # (images * n, vocab)
        tokens = torch.multinomial(lp.detach().float().exp(), 1).squeeze(1)  # (images * n,)
        log_p = log_p + lp.gather(1, tokens.unsqueeze(1)).squeeze(1) * alive  # up to and with EOS
        steps.append(tokens)
        alive = alive & (tokens != EOS)
        if not alive.any():
            break
    seqs = torch.stack(steps, 1).tolist()  # (images * n, steps)
    refs = batch["refs"]
    rewards = torch.tensor([scorer.mean_similarity(seq[: seq.index(EOS)] if EOS in seq else seq, refs[i // n])
                            for i, seq in enumerate(seqs)])
    rewards = rewards.view(images, n)  # (images, n)
    baseline = (rewards.sum(1, keepdim=True) - rewards) / max(n - 1, 1)  # mean of the others
    advantage = (rewards - baseline).view(-1).to(log_p.device)  # (images * n,)
    return -(advantage * log_p).sum(), torch.tensor(images * n)
