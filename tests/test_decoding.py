"""Greedy, beam search and sampling on hand-made Markov models whose best sequences are known."""

import math

import pytest
import torch

from attnapps.attention import KVCache
from attnapps.decoding import beam_search, filter_logits, greedy, length_penalty, reorder_state, sample_next

BOS, EOS = 0, 1


def markov_step(table):
    """log P(next | previous) from a (V, V) table; state carries each row's id to check reordering."""
    logp = torch.log_softmax(table, -1)

    def step(tokens, state):
        return logp[tokens], {"row": state["row"]}
    return step


def random_table(seed, v=7):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(v, v, generator=g) * 2
    t[:, BOS] = -1e9  # never emit BOS
    return t


@pytest.mark.parametrize("seed", range(8))
def test_beam_one_equals_greedy(seed):
    step = markov_step(random_table(seed))
    state = {"row": torch.arange(3)}
    max_len = torch.tensor([4, 9, 6])
    g = greedy(step, state, 3, BOS, EOS, max_len)
    b = beam_search(step, state, 3, BOS, EOS, max_len, beam=1, alpha=0.6)
    assert g.tokens == b.tokens
    assert g.scores == pytest.approx(b.scores, abs=1e-5)


def test_beam_finds_better_sequence_than_greedy():
    # from BOS: token 2 (p=.6) then its continuations are flat; token 3 (p=.4) then EOS is certain
    t = torch.full((5, 5), -1e9)
    t[BOS, 2], t[BOS, 3] = math.log(0.6), math.log(0.4)
    t[2, 2:5] = math.log(1 / 3)
    t[2, EOS] = math.log(0.05)
    t[3, EOS] = 0.0
    t[4, EOS] = 0.0
    step = markov_step(t)
    state = {"row": torch.arange(1)}
    assert greedy(step, state, 1, BOS, EOS, 5).tokens == [[2, 2, 2, 2, 2]]
    best = beam_search(step, state, 1, BOS, EOS, 5, beam=3, alpha=0.0)
    assert best.tokens == [[3]] and best.scores[0] == pytest.approx(math.log(0.4), abs=1e-4)


def test_n_best_lists_the_finished_hypotheses_best_first():
    t = torch.full((5, 5), -1e9)
    t[BOS, 2], t[BOS, 3], t[BOS, 4] = math.log(0.5), math.log(0.3), math.log(0.2)
    t[2:5, EOS] = 0.0  # each first token then EOS: three one-token hypotheses
    step = markov_step(t)
    state = {"row": torch.arange(2)}
    out = beam_search(step, state, 2, BOS, EOS, 5, beam=3, alpha=0.0, n_best=3)
    assert [[seq for seq, _ in nb] for nb in out.nbest] == [[[2], [3], [4]]] * 2
    assert [s for _, s in out.nbest[0]] == pytest.approx([math.log(0.5), math.log(0.3), math.log(0.2)], abs=1e-4)
    assert out.tokens == [nb[0][0] for nb in out.nbest]  # the first of the n-best is the answer
    assert beam_search(step, state, 2, BOS, EOS, 5, beam=3, alpha=0.0).nbest is None


def test_length_penalty_changes_ranking_as_specified():
    # short: [2] then EOS, log P = log .5 ; long: [3, 4, 4] then EOS, log P = log .45
    t = torch.full((5, 5), -50.0)
    t[BOS, 2], t[BOS, 3] = math.log(0.5), math.log(0.45)
    t[2, EOS] = 0.0
    t[3, 4] = 0.0
    t[4, 4] = 0.0  # EOS only when the step function forces it
    # make the long one end after exactly three tokens: use a state-dependent step
    logp = torch.log_softmax(t, -1)

    def step(tokens, state):
        n = state["n"] + 1
        lp = logp[tokens].clone()
        at_end = (tokens == 4) & (n >= 4)
        lp[at_end] = torch.log_softmax(torch.tensor([-50.0, 0.0, -50.0, -50.0, -50.0]), -1)
        return lp, {"n": n}
    state = {"n": torch.zeros(1, dtype=torch.long)}
    no_penalty = beam_search(step, state, 1, BOS, EOS, 10, beam=2, alpha=0.0)
    assert no_penalty.tokens == [[2]]
    # alpha = 2: score / ((5 + len + 1) / 6) ** 2: short log(.5)/ (7/6)^2 = -0.509 ; long log(.45)/(9/6)^2 = -0.355
    assert math.log(0.5) / float(length_penalty(torch.tensor(2), 2.0)) < math.log(0.45) / float(length_penalty(torch.tensor(4), 2.0))
    assert beam_search(step, state, 1, BOS, EOS, 10, beam=2, alpha=2.0).tokens == [[3, 4, 4]]


def test_always_returns_a_hypothesis_when_no_eos():
    t = torch.zeros(4, 4)
    t[:, EOS] = -1e9
    step = markov_step(t)
    state = {"row": torch.arange(2)}
    out = beam_search(step, state, 2, BOS, EOS, torch.tensor([3, 5]), beam=3)
    assert [len(x) for x in out.tokens] == [3, 5]
    g = greedy(step, state, 2, BOS, EOS, torch.tensor([3, 5]))
    assert [len(x) for x in g.tokens] == [3, 5]


def test_reorder_state_nested_and_cache():
    cache = KVCache(k=torch.arange(3.0).view(3, 1, 1, 1), v=torch.arange(3.0).view(3, 1, 1, 1))
    s = reorder_state({"h": (torch.arange(3), [torch.arange(3) * 10]), "c": cache, "n": 5}, torch.tensor([2, 2, 0]))
    assert s["h"][0].tolist() == [2, 2, 0] and s["h"][1][0].tolist() == [20, 20, 0]
    assert s["c"].k.flatten().tolist() == [2.0, 2.0, 0.0] and s["n"] == 5


def test_top_k_and_top_p_only_sample_allowed_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True, True]]
    # nucleus 0.75: 0.5 + 0.3 reaches it, the rest go
    assert torch.isinf(filter_logits(logits, top_p=0.75)).tolist() == [[False, False, True, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.85)).tolist() == [[False, False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True, True]]
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, top_k=3, generator=g)) for _ in range(300)}
    assert draws == {0, 1, 2}
    draws = {int(sample_next(logits, 1.0, top_p=0.5, generator=g)) for _ in range(50)}
    assert draws == {0}
    assert int(sample_next(logits, 0.0)) == 0
