"""The attention diagnostics on cases whose answers are known: hand-computed measures, scipy's Kendall
tau, and a constructed classifier whose output depends on one token only, with its attention forced
onto that token (faithful) or away from it (unfaithful)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from attnapps.attention import build_attention
from attnapps.diagnostics import (ModelProbe, alignment_error_rate, diagnose, kendall_tau, normalised_entropy,
                                  permutation_of, read_alignments, top_k_mass, total_variation)
from attnapps.errors import DataError


def test_concentration_known_values():
    assert normalised_entropy(torch.ones(8) / 8) == pytest.approx(1.0)
    assert normalised_entropy(torch.tensor([0.0, 1.0, 0.0])) == pytest.approx(0.0)
    assert normalised_entropy(torch.tensor([0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.5)  # log 2 / log 4
    w = torch.tensor([0.1, 0.5, 0.3, 0.1])
    assert top_k_mass(w, 1) == pytest.approx(0.5) and top_k_mass(w, 3) == pytest.approx(0.9)
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.75])) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_matches_scipy_with_ties(seed):
    from scipy.stats import kendalltau

    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 4, (12,), generator=g).float()  # ties on purpose
    b = torch.randn(12, generator=g)
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a.numpy(), b.numpy()).statistic)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_permutation_moves_the_inputs_and_keeps_padding():
    perm = permutation_of(3, random.Random(0))
    w = torch.tensor([[[0.2, 0.3, 0.5, 0.0]]])
    out = perm(w)
    assert sorted(out[0, 0, :3].tolist()) == pytest.approx([0.2, 0.3, 0.5]) and out[0, 0, 3] == 0
    assert not torch.equal(out, w)


def test_alignment_error_rate_hand_computed(tmp_path):
    path = tmp_path / "test.align"
    path.write_text("0-0 1-1 2?2\n0-1\n")
    gold = read_alignments(path, line_count=2)
    assert gold[0] == ({(0, 0), (1, 1)}, {(0, 0), (1, 1), (2, 2)})
    assert alignment_error_rate([{(0, 0), (1, 1), (2, 2)}, {(0, 1)}], gold) == pytest.approx(0.0)
    # A = {(0,0), (1,2)} and {(0,1)}: |A∩S| = 2, |A∩P| = 2, |A| = 3, |S| = 3 -> 1 - 4/6
    assert alignment_error_rate([{(0, 0), (1, 2)}, {(0, 1)}], gold) == pytest.approx(1 - 4 / 6)
    with pytest.raises(DataError, match="2 alignment lines for 3"):
        read_alignments(path, line_count=3)
    path.write_text("0-0 1:1\n")
    with pytest.raises(DataError, match=r"test.align:1.*bad alignment link '1:1'"):
        read_alignments(path)


class OneTokenClassifier(nn.Module):
    """Decides "positive" iff token 7 is in the text. ``faithful``: the decision is read from the
    attention's context (values: 1 for token 7, else 0) and the attention is forced onto token 7;
    otherwise the attention is forced onto token 3 and the decision comes from a count that bypasses it."""

    def __init__(self, faithful: bool):
        super().__init__()
        self.faithful = faithful
        self.attention = build_attention("dot", 16)
        self.query = torch.zeros(1, 1, 16)
        self.query[0, 0, 7 if faithful else 3] = 20.0  # the score of the token the attention is forced onto

    def forward(self, ids: torch.Tensor):
        keys = nn.functional.one_hot(ids, 16).float()  # (1, len, 16)
        values = (ids == 7).float().unsqueeze(-1)  # (1, len, 1)
        context, w = self.attention(self.query, keys, values, need_weights=True)  # (1, 1, 1), (1, 1, len)
        evidence = context[:, 0, 0] if self.faithful else values.sum((1, 2)).clamp(max=1)
        logit = 12.0 * (evidence - 0.5)
        p = torch.sigmoid(logit)
        return torch.stack([1 - p, p], -1)[0], w[0, 0]


def one_token_probes(faithful: bool, n: int = 24):
    model, rng = OneTokenClassifier(faithful), random.Random(1)
    probes = []
    for _ in range(n):
        ids = [rng.choice([1, 2, 4, 5, 6]) for _ in range(rng.randint(4, 9))]
        ids[rng.randrange(len(ids))] = 7  # every text is positive ...
        ids[rng.randrange(len(ids))] = 3  # ... and has a distractor 3
        if 7 not in ids:
            ids.append(7)
        run = lambda x, model=model: model(torch.tensor([x]))[0]  # noqa: E731
        probs, w = model(torch.tensor([ids]))

        def saliency(ids=ids, model=model):
            x = torch.tensor([ids])
            keys = nn.functional.one_hot(x, 16).float().requires_grad_(True)
            values = (x == 7).float().unsqueeze(-1)
            context, _ = model.attention(model.query, keys, values)
            if not model.faithful:  # the decision does not read the attention's inputs at all
                return torch.zeros(len(ids))
            torch.log(torch.sigmoid(12.0 * (context[:, 0, 0] - 0.5)) + 1e-9).sum().backward()
            return (keys * keys.grad).sum(-1)[0]

        probes.append(ModelProbe(ids, run, w.detach(), int(probs.argmax()), [model.attention], saliency))
    return probes


def test_faithful_attention_passes_every_test_and_bypassed_attention_fails_them():
    good = diagnose(one_token_probes(faithful=True), seed=0, decision=True)
    bad = diagnose(one_token_probes(faithful=False), seed=0, decision=True)
    # both are concentrated: all attention on one token
    assert good["diag.top1"] > 0.99 and bad["diag.top1"] > 0.99 and good["diag.entropy"] < 0.05
    # removing the attended token flips the faithful model's decision every time, the other's never
    assert good["diag.flip_max"] == 1.0 and bad["diag.flip_max"] == 0.0
    assert good["diag.erase_max"] > 5.0 and bad["diag.erase_max"] == pytest.approx(0.0, abs=1e-6)
    assert good["diag.flip_random"] < 0.5
    # permuting the weights moves the faithful model's output, leaves the bypassed one's unchanged
    assert good["diag.permute_tvd"] > 0.5 and bad["diag.permute_tvd"] == pytest.approx(0.0, abs=1e-6)
    # attention ranks the inputs as erasure does only when it is faithful
    assert good["diag.tau_loo"] > 0.3 and bad["diag.tau_loo"] < 0.1
    assert good["diag.outputs"] == 24.0
