"""The decoding options (``decode.*`` and predict): step rules, seq2seq sampling, the coverage penalty, on
hand-made models whose answers are known."""

import math

import pytest
import torch

from attnapps.decoding import (BeamOptions, Sampling, StepRules, beam_search, coverage_penalty, decode_batches,
                               greedy, search)

BOS, EOS = 0, 1


def markov_step(table):
    logp = torch.log_softmax(table, -1)

    def step(tokens, state):
        return logp[tokens], state
    return step


def cycle_table(v=6):
    """From any token, the next is (token + 1) among 2..v-1, wrapping: 2 3 4 5 2 3 ... ; EOS unlikely."""
    t = torch.full((v, v), -4.0)
    for a in range(v):
        t[a, 2 + (a - 1) % (v - 2) if a >= 2 else 2] = 3.0
    t[:, BOS] = -1e9
    t[:, EOS] = -2.0
    return t


def test_no_repeat_ngram_blocks_a_repeated_bigram_greedy_and_beam():
    step = markov_step(cycle_table())
    state = {"row": torch.arange(1)}
    free = greedy(step, state, 1, BOS, EOS, 9).tokens[0]
    assert free == [2, 3, 4, 5, 2, 3, 4, 5, 2]
    for name, decode in (("greedy", lambda r: greedy(step, state, 1, BOS, EOS, 9, rules=r)),
                         ("beam", lambda r: beam_search(step, state, 1, BOS, EOS, 9, beam=3, alpha=0.0, rules=r))):
        for n in (1, 2, 3):
            out = decode(StepRules(no_repeat_ngram=n)).tokens[0]
            grams = [tuple(out[i:i + n]) for i in range(len(out) - n + 1)]
            assert len(grams) == len(set(grams)), (name, n, out)  # no n-gram twice
            if name == "greedy":  # nothing blocked before a repeat was possible
                assert out[:n + 3] == free[:n + 3] and out != free, out


def test_min_len_delays_eos_and_never_emits_bos():
    t = torch.full((5, 5), -1e9)
    t[BOS, 2] = 0.0
    t[2, EOS], t[2, 3] = math.log(0.9), math.log(0.1)
    t[3, EOS], t[3, BOS], t[3, 4] = math.log(0.7), math.log(0.2), math.log(0.1)
    t[4, EOS] = 0.0
    step = markov_step(t)
    state = {}
    assert greedy(step, state, 1, BOS, EOS, 8).tokens == [[2]]
    out = greedy(step, state, 1, BOS, EOS, 8, rules=StepRules(min_len=3))
    assert out.tokens == [[2, 3, 4]]  # EOS banned twice; BOS (the next best after 3) banned too
    # the score is the log-probability under the renormalised distributions: 1 * 0.1/0.1 * 0.1/(0.1) * 1
    assert out.scores[0] == pytest.approx(0.0, abs=1e-4)
    assert beam_search(step, state, 1, BOS, EOS, 8, beam=2, alpha=0.0, rules=StepRules(min_len=3)).tokens == [[2, 3, 4]]


def test_repetition_penalty_lowers_seen_tokens_by_the_factor_then_renormalises():
    lp = torch.log(torch.tensor([[0.05, 0.05, 0.5, 0.4]]))
    out = StepRules(repetition_penalty=2.0).apply(lp, torch.tensor([[2]]), eos=1)
    expected = torch.log_softmax(torch.log(torch.tensor([0.05, 0.05, 0.25, 0.4])), -1)  # log 0.5 * 2 = log 0.25
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert out[0].argmax() == 3  # token 2, said once, lost its lead


def test_inactive_rules_leave_log_probs_alone():
    lp = torch.log_softmax(torch.randn(3, 9), -1)
    assert StepRules().apply(lp, torch.tensor([[4], [5], [6]]), eos=1) is lp
    assert StepRules.of(BeamOptions()) == StepRules() and Sampling.of(BeamOptions()) is None


def test_sampling_follows_the_distribution_and_its_seed():
    t = torch.full((4, 4), -1e9)
    t[BOS, 2], t[BOS, 3] = math.log(0.7), math.log(0.3)
    t[2:4, EOS] = 0.0
    step = markov_step(t)
    state = {"row": torch.arange(4000)}
    draws = search(step, state, 4000, BOS, EOS, 3, sampling=Sampling(1.0, seed=5)).tokens
    share = sum(d == [2] for d in draws) / len(draws)
    assert abs(share - 0.7) < 0.03  # binomial sd 0.007
    again = search(step, state, 4000, BOS, EOS, 3, sampling=Sampling(1.0, seed=5)).tokens
    assert again == draws
    assert search(step, state, 4000, BOS, EOS, 3, sampling=Sampling(1.0, top_k=1, seed=5)).tokens == [[2]] * 4000
    sharp = search(step, state, 4000, BOS, EOS, 3, sampling=Sampling(0.25, seed=5)).tokens  # 0.7^4 : 0.3^4
    assert abs(sum(d == [2] for d in sharp) / 4000 - 0.7 ** 4 / (0.7 ** 4 + 0.3 ** 4)) < 0.02


class Aligned:
    """A Seq2SeqDecoder whose attention is set by hand: ``encode(src (batch, n))``; each step attends to
    source position ``t`` (one-hot) when the hypothesis so far has followed the 'long' path, else always
    to position 0; the long path is less likely (log P lower) but reads every source position."""

    def __init__(self):
        from attnapps.attention import build_attention

        self.attn = build_attention("dot", 4, 4)
        self.table = torch.full((6, 6), -1e9)
        self.table[BOS, 2], self.table[BOS, 3] = math.log(0.6), math.log(0.4)  # 2: short path, 3: long
        self.table[2, EOS] = 0.0
        self.table[3, 4] = 0.0
        self.table[4, 5] = 0.0
        self.table[5, EOS] = 0.0
        self.logp = torch.log_softmax(self.table, -1)

    def eval(self):
        return self

    def named_modules(self):
        return [("attn", self.attn)]

    def decoding_attention(self):
        return [self.attn]

    def encode(self, src):
        return {"n": src, "t": torch.zeros(src.size(0), dtype=torch.long), "long": torch.zeros(src.size(0))}

    def step(self, tokens, state):
        b, n = state["n"].shape
        long = torch.where(tokens == 3, 1.0, state["long"])
        pos = torch.where(long.bool(), state["t"].clamp(max=n - 1), torch.zeros_like(state["t"]))
        keys = torch.nn.functional.one_hot(torch.arange(n), 4).float().expand(b, n, 4) * 50  # (b, n, 4)
        query = torch.nn.functional.one_hot(pos, 4).float().unsqueeze(1)  # (b, 1, 4): attends to `pos`
        self.attn(query, keys, need_weights=True)  # recorded by step_attention
        return self.logp[tokens], {"n": state["n"], "t": state["t"] + 1, "long": long}


def test_coverage_penalty_prefers_the_hypothesis_that_reads_the_whole_source():
    model = Aligned()
    src = torch.zeros(1, 3, dtype=torch.long)

    def inputs(chunk):
        return {"src": src}, 6

    plain = decode_batches(model, [0], inputs, BOS, EOS, beam=2, alpha=0.0, attention=False)
    assert plain.tokens == [[2]]  # log 0.6 > log 0.4
    covered = decode_batches(model, [0], inputs, BOS, EOS, beam=2, alpha=0.0, attention=False, n_best=2,
                             options=BeamOptions(coverage=1.0))
    # [2]: one step on position 0 -> positions 1, 2 get ~0 attention: log(~0) each; [3 4 5]: each position once
    assert covered.tokens == [[3, 4, 5]]
    assert [t for t, _ in covered.nbest[0]] == [[3, 4, 5], [2]]
    assert covered.scores[0] == pytest.approx(math.log(0.4), abs=1e-4)  # scores stay log P


def test_coverage_penalty_values():
    assert coverage_penalty(torch.eye(3)) == pytest.approx(0.0)
    assert coverage_penalty(torch.tensor([[0.25, 0.25, 0.5, 0.0]])) == pytest.approx(2 * math.log(0.25) + math.log(0.5))


class CycleLM:
    """A language model over 6 tokens that continues 2 3 4 5 2 3 ... (the last token decides)."""

    context = 64

    def __init__(self):
        self.logits = torch.log_softmax(cycle_table(), -1)

    def __call__(self, ids):
        return self.logits[ids]

    def new_state(self, batch=1):
        return {}

    def step(self, ids, state):
        return self.logits[ids], state  # (batch, new, vocab)


def test_language_model_sampling_obeys_the_rules():
    from attnapps.decoding import sample_tokens

    lm = CycleLM()
    free = sample_tokens(lm, [2], 8, temperature=0)
    assert free == [3, 4, 5, 2, 3, 4, 5, 2]
    out = sample_tokens(lm, [2], 8, temperature=0, rules=StepRules(no_repeat_ngram=2))
    grams = list(zip(out, out[1:]))
    assert out[:4] == [3, 4, 5, 2] and len(grams) == len(set(grams))
    # always P(3) = 0.6, P(4) = 0.4: with penalty 2, a seen 3 (log 0.6 * 2 = -1.02) loses to an unseen 4
    # (log 0.4 = -0.92), but wins once 4 is seen too (-1.83)
    lm.logits = torch.log(torch.tensor([1e-9, 1e-9, 1e-9, 0.6, 0.4, 1e-9])).expand(6, 6)
    assert sample_tokens(lm, [2], 5, temperature=0) == [3, 3, 3, 3, 3]
    assert sample_tokens(lm, [2], 5, temperature=0, rules=StepRules(repetition_penalty=2.0)) == [3, 4, 3, 3, 3]


@pytest.mark.slow
def test_options_reach_predict_and_the_runs_decoding(tiny_runs, tmp_path):
    """``decode.*`` (what evaluation decodes with) and predict's options, on the tiny trained runs."""
    from attnapps.predict import load_run, main as predict, predict_options

    run, _ = tiny_runs["translation"]
    (tmp_path / "in.txt").write_text("abcdefg\nqrs\n")
    out = tmp_path / "out.txt"
    assert predict([f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={out}", "beam=4", "n_best=3",
                    "hybrid=false", "channel=0"]) == 0
    lines = [line.split(" ||| ") for line in out.read_text().splitlines()]
    assert [int(n) for n, _, _ in lines] == [0, 0, 0, 1, 1, 1]  # Moses' n-best format, 3 per input
    one = tmp_path / "one.txt"
    assert predict([f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={one}", "beam=4", "hybrid=false",
                    "channel=0"]) == 0
    assert one.read_text().splitlines() == [lines[0][1], lines[3][1]]  # the n-best list starts with the answer
    assert all(float(sc) <= 0 for _, _, sc in lines)  # log-probabilities
    task, model = load_run(run)
    ids = [task.src_tok.encode("abcdefg")]
    task.cfg.decode.min_len = 15  # the run's own decode section: what evaluation uses
    with torch.no_grad():
        long = task.translate(model, ids, beam=1, attention=False)
        options = predict_options(task, {"beam": "1", "no_repeat_ngram": "1", "min_len": "0"})
        unique = task.translate(model, ids, beam=1, attention=False, options=options)
    assert len(long.tokens[0]) >= 15 and task.tgt_tok.bos_id not in long.tokens[0]
    assert len(set(unique.tokens[0])) == len(unique.tokens[0])
