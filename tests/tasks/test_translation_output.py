"""The translators' output layers that read the attention: the pointer-generator (``model.copy=true``),
a distribution that puts the copy mass exactly on the attended source tokens and copies tokens the
vocabulary's softmax never learned to produce; the IBM Model 1 lexicon (``model.lexicon=true``), fitted
as the reference implementation fits it and added as Arthur et al.'s bias; both decoding step by step
as the teacher-forced forward."""

import math
import random
import sys
from pathlib import Path

import pytest
import torch

from attnapps.data import pad_batch
from attnapps_tasks.translation.lexicon import LexicalBias, fit_ibm1
from attnapps_tasks.translation.model import (CopyOutput, RNNConfig, RNNSeq2Seq, TransformerConfig,
                                              TransformerSeq2Seq)


def copy_models(copy=True):
    torch.manual_seed(0)
    return [RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, dropout=0.0, copy=copy), 30, 30).eval(),
            RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, cell="lstm", attention="multihead", heads=2, dropout=0.0,
                                 copy=copy), 30, 30).eval(),
            TransformerSeq2Seq(TransformerConfig(hidden_size=32, heads=4, layers=2, ff_size=64, dropout=0.0,
                                                 copy=copy), 30, 30).eval(),
            RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, dropout=0.0, copy=copy, input_feed=False), 30,
                       30).eval()]


IDS = ["rnn-additive", "lstm-multihead", "transformer", "rnn-additive-no-feed"]
SRC, SRC_LEN = pad_batch([[5, 6, 5, 8], [9, 10]])
TGT = torch.tensor([[2, 14, 15, 16, 17], [2, 18, 19, 20, 0]])


def test_copy_output_known_values():
    """P(y) = g softmax(logits)(y) + (1 - g) * (the attention on source positions holding y)."""
    out = CopyOutput(1, torch.arange(6))
    with torch.no_grad():
        out.gate.weight.zero_()
        out.gate.bias.fill_(0.0)  # g = 0.5
    logits = torch.zeros(1, 6)  # uniform: 1/6 each
    weights = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    src_ids = torch.tensor([[4, 2, 4, 0]])  # token 4 twice; padding (id 0) has weight 0
    log_p, p_copy = out(logits, weights, src_ids, torch.zeros(1, 1))
    expected = torch.full((1, 6), 0.5 / 6)
    expected[0, 4] += 0.5 * 0.7
    expected[0, 2] += 0.5 * 0.3
    assert torch.allclose(log_p.exp(), expected, atol=1e-6) and p_copy.item() == pytest.approx(0.5)


@pytest.mark.parametrize("model", copy_models(), ids=IDS)
def test_copy_steps_equal_teacher_forcing_and_a_closed_gate_copies_the_attention(model):
    log_p, p_copy = model.teacher_forced(SRC, SRC_LEN, TGT)  # (2, 5, 30), (2, 5)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(2, 5), atol=1e-5) and p_copy.shape == (2, 5)
    state = model.encode(SRC, SRC_LEN)
    for t in range(TGT.size(1)):
        lp, state = model.step(TGT[:, t], state)
        assert torch.allclose(lp, log_p[:, t], atol=1e-5)
    with torch.no_grad():
        model.copy.gate.bias.fill_(-1e4)  # never generate: every bit of probability is copied
    from attnapps.attention import record
    with record(model) as maps:
        log_p, p_copy = model.teacher_forced(SRC, SRC_LEN, TGT)
    name = next(n for n, m in model.named_modules() if m is model.explained_attention()[0])
    a = maps[name].mean(1)  # (2, 5, src_len): the attention the copy distribution is made of
    p = log_p.exp()
    assert torch.allclose(p_copy, torch.ones(2, 5))
    assert torch.allclose(p[0, :, 5], a[0, :, 0] + a[0, :, 2], atol=1e-5)  # source token 5 at positions 0 and 2
    assert torch.allclose(p[1, :, 10], a[1, :, 1], atol=1e-5)
    assert torch.allclose(p[0, :, [5, 6, 8]].sum(-1), torch.ones(5), atol=1e-5)  # nothing outside the source


def test_default_models_are_unchanged_by_the_copy_option():
    """model.copy=false builds no gate: the same parameters, the same outputs as before the option."""
    plain = copy_models(copy=False)
    assert all(m.copy is None and not any("copy" in n for n, _ in m.named_parameters()) for m in plain)


def train_copy_task(copy: bool, steps=250):
    """Identity on sequences of ids 4..19 in training; tested on ids 20..29, which no training target
    holds: the vocabulary's softmax never learns to produce them, a copying decoder can. Returns the
    mean probability of the right token at each position of the test sequences (teacher forcing)."""
    torch.manual_seed(0)
    model = RNNSeq2Seq(RNNConfig(embed_size=24, hidden_size=48, dropout=0.0, label_smoothing=0.0, copy=copy,
                                 lexicon=False), 30, 30, shared_vocab=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        seqs = [torch.randint(4, 20, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
                for _ in range(32)]
        src, src_len = pad_batch(seqs)
        tgt_in, _ = pad_batch([[2] + s for s in seqs])
        tgt_out, _ = pad_batch([s + [3] for s in seqs])
        logits = model(src, src_len, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tests = [torch.randint(20, 30, (5,), generator=g).tolist() for _ in range(40)]
    src, src_len = pad_batch(tests)
    tgt_in, _ = pad_batch([[2] + s[:-1] for s in tests])
    with torch.no_grad():
        log_p = torch.log_softmax(model(src, src_len, tgt_in), -1)  # (40, 5, 30)
    return log_p.gather(-1, torch.tensor(tests).unsqueeze(-1)).exp().mean().item()


@pytest.mark.slow
def test_copying_reaches_tokens_the_softmax_never_learned():
    """Measured: 0.29 with the copy output, 0.0006 without (the unseen ids' embeddings are untrained, so
    the copy comes from where the attention looks, not from what the tokens are)."""
    assert train_copy_task(copy=True) > 0.2
    assert train_copy_task(copy=False) < 0.01


def test_ibm1_lexicon_equals_the_reference_implementation():
    """The tensor EM gives the same t(f | e) as the baseline script's dictionary-based IBM Model 1."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from translation_baseline import ibm1

    rng = random.Random(0)
    pairs = [([rng.randint(3, 12) for _ in range(rng.randint(1, 5))], [rng.randint(3, 15) for _ in range(rng.randint(1, 5))])
             for _ in range(200)]
    lex = fit_ibm1(pairs, 13, 16, iterations=5, top=16)  # top 16 >= every target: nothing cut
    ref = ibm1([([str(x) for x in s], [str(y) for y in t]) for s, t in pairs], iterations=5)
    for e in range(3, 13):
        row = {int(i): float(p) for i, p in zip(lex["ids"][e], lex["probs"][e]) if p > 0}
        assert row == pytest.approx({int(f): p for f, p in ref[str(e)].items()}, abs=1e-6)
    assert lex["probs"][0].sum() == pytest.approx(1.0)  # NULL (the padding id) has its row
    assert (lex["probs"][1:3] == 0).all()  # ids never seen as a source token: no entries
    top2 = fit_ibm1(pairs, 13, 16, iterations=5, top=2)
    assert torch.allclose(top2["probs"].sum(1)[3:], torch.ones(10))  # renormalised
    best = sorted(zip(lex["probs"][5].tolist(), lex["ids"][5].tolist()), reverse=True)[:2]
    assert set(top2["ids"][5].tolist()) == {i for _, i in best}


def test_ibm1_over_its_budget_is_fitted_on_a_fixed_sample_of_whole_pairs(monkeypatch):
    """A corpus with more co-occurrences than MAX_COOCCURRENCES: the lexicon is the reference's on the
    sample sample_pairs draws -- whole pairs, within the budget, the same on every call."""
    from attnapps_tasks.translation import lexicon

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from translation_baseline import ibm1

    rng = random.Random(1)
    pairs = [([rng.randint(3, 12) for _ in range(rng.randint(1, 4))], [rng.randint(3, 15) for _ in range(rng.randint(1, 4))])
             for _ in range(300)]
    total = sum((len(s) + 1) * len(t) for s, t in pairs)
    assert lexicon.sample_pairs(pairs, total) == pairs  # within the budget: every pair
    monkeypatch.setattr(lexicon, "MAX_COOCCURRENCES", total // 3)
    sample = lexicon.sample_pairs(pairs)
    assert sample == lexicon.sample_pairs(pairs) and total // 4 < sum((len(s) + 1) * len(t) for s, t in sample) <= total // 3
    assert len(sample) < len(pairs) and all(p in pairs for p in sample)  # whole pairs of the corpus
    lex = lexicon.fit_ibm1(pairs, 13, 16, iterations=5, top=16)
    ref = ibm1([([str(x) for x in s], [str(y) for y in t]) for s, t in sample], iterations=5)
    for e in range(3, 13):
        row = {int(i): float(p) for i, p in zip(lex["ids"][e], lex["probs"][e]) if p > 0}
        assert row == pytest.approx({int(f): p for f, p in ref.get(str(e), {}).items()}, abs=1e-6)


def test_lexical_bias_known_values():
    """log(sum_j a_j t(y | x_j) + eps) for one step and for teacher forcing."""
    ids = torch.tensor([[0, 0], [2, 3], [3, 0]])  # source 1 -> target 2 (.75) or 3 (.25); source 2 -> 3
    probs = torch.tensor([[0.0, 0.0], [0.75, 0.25], [1.0, 0.0]])
    bias = LexicalBias(ids, probs, tgt_vocab=4, eps=1e-3)
    w = torch.tensor([[0.6, 0.4]])  # attention over the source [1, 2]
    got = bias(w, torch.tensor([[1, 2]])).exp() - 1e-3
    assert torch.allclose(got, torch.tensor([[0.0, 0.0, 0.45, 0.15 + 0.4]]), atol=1e-6)
    both = bias(torch.stack([w, w.flip(-1)], 1), torch.tensor([[1, 2]])).exp() - 1e-3  # (1, 2 steps, 4)
    assert torch.allclose(both[0, 1], torch.tensor([0.0, 0.0, 0.3, 0.1 + 0.6]), atol=1e-6)


def lexicon_models():
    lex = fit_ibm1([([5, 6], [14, 15]), ([6, 7], [15, 16]), ([9], [18])], 30, 30)
    torch.manual_seed(0)
    return [RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, dropout=0.0, lexicon=True, copy=True), 30, 30,
                       lexicon=lex).eval(),
            TransformerSeq2Seq(TransformerConfig(hidden_size=32, heads=4, layers=2, ff_size=64, dropout=0.0,
                                                 lexicon=True), 30, 30, lexicon=lex).eval(),
            RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, dropout=0.0, lexicon=True, copy=True,
                                 input_feed=False), 30, 30, lexicon=lex).eval()]


@pytest.mark.parametrize("model", lexicon_models(), ids=["rnn-lexicon-copy", "transformer-lexicon",
                                                        "rnn-lexicon-copy-no-feed"])
def test_lexicon_steps_equal_teacher_forcing(model):
    log_p = model(SRC, SRC_LEN, TGT)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(2, 5), atol=1e-5)
    state = model.encode(SRC, SRC_LEN)
    for t in range(TGT.size(1)):
        lp, state = model.step(TGT[:, t], state)
        assert torch.allclose(lp, log_p[:, t], atol=1e-5)


def test_word_by_word_baseline_equals_the_script_and_is_chosen_on_valid():
    """The in-run baseline translates as scripts/translation_baseline.py does (5 iterations, NULL-aligned
    words dropped), and picks its settings by valid BLEU among the candidates it reports."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import translation_baseline as script
    from attnapps.data import scripts
    from attnapps_tasks.translation.baseline import word_by_word

    rng = random.Random(1)
    lexicon = {"the": "der", "cat": "Katze", "dog": "Hund", "sees": "sieht", "a": "eine", "house": "Haus",
               "big": "grosse", "red": "rote"}
    def pair():
        words = [rng.choice(list(lexicon)) for _ in range(rng.randint(2, 6))]
        return " ".join(words) + " .", " ".join(lexicon[w] for w in words if w != "a") + " ."
    train = [pair() for _ in range(300)]
    splits = {"valid": [pair() for _ in range(30)] + [("zebra sees Bob .", "Zebra sieht Bob .")],
              "test": [pair() for _ in range(30)]}
    base = word_by_word(train, splits, scripts.split_words, "13a")
    t = script.ibm1([(script.words(s), script.words(g)) for s, g in train])
    null_best = {e: max(fs.values()) < t[script.NULL].get(max(fs, key=fs.get), 0.0) for e, fs in t.items()
                 if e != script.NULL}
    for s, _ in splits["valid"]:
        assert base["translate_with"](s, 5, True) == script.detok(script.word_by_word(script.words(s), t, null_best))
    assert base["translate_with"]("zebra sees Bob .", 5, False) == "zebra sieht Bob."  # unknown words copied
    best = max(base["candidates"].values())
    assert base["candidates"][(base["iterations"], base["drop_null"])] == best == base["valid"]["bleu"]


def test_channel_log_probs_known_values():
    """log P(x | y) = sum_j log(sum over NULL and y's pieces of t(x_j | y_i) / (|y| + 1) + eps), by hand."""
    from attnapps_tasks.translation.lexicon import channel_log_probs

    # reverse lexicon, target piece -> source pieces: NULL (0) -> 1; 2 -> 2 or 3 (half each); 3 -> 3
    ids = torch.tensor([[1, 0], [0, 0], [2, 3], [3, 0]])
    probs = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    got = channel_log_probs({"ids": ids, "probs": probs}, [2, 3], [[2], [3], [2, 3]], null_id=0, eps=1e-7)
    expected = [2 * math.log(0.5 / 2 + 1e-7),  # y = [2]: each source piece has half of 2's mass, over NULL + 1
                math.log(0 + 1e-7) + math.log(1 / 2 + 1e-7),  # y = [3]: nothing explains source piece 2
                math.log(0.5 / 3 + 1e-7) + math.log(1.5 / 3 + 1e-7)]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_the_written_out_loop_trains_the_default_decoder_as_the_stepped_modules_do():
    """``model.fused_loop`` (default): in training, the input-fed GRU decoder with additive attention runs
    :func:`attnapps.layers.input_feed.input_fed_loop`; the log-probabilities (the lexicon reads the attention
    weights) and every parameter's gradient equal those of stepping the modules under autograd (fp64, with
    dropout: both draw the same masks)."""
    from unittest import mock

    import attnapps_tasks.translation.model as model_module

    lex = fit_ibm1([([5, 6], [14, 15]), ([6, 7], [15, 16]), ([9], [18])], 30, 30)
    torch.manual_seed(0)
    model = RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, dropout=0.2, lexicon=True), 30, 30,
                       lexicon=lex).double().train()
    assert model.fused_loop

    def run(fused: bool):
        model.fused_loop = fused
        model.zero_grad()
        torch.manual_seed(1)
        log_p = model(SRC, SRC_LEN, TGT)  # (batch, tgt_len, vocab)
        log_p.gather(-1, torch.tensor([[14, 15, 16, 17, 1], [18, 19, 20, 3, 4]]).unsqueeze(-1)).sum().backward()
        return log_p.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    with mock.patch.object(model_module, "input_fed_loop", wraps=model_module.input_fed_loop) as loop:
        fused = run(True)
        assert loop.call_count == 1
        stepped = run(False)
        assert loop.call_count == 1
        with torch.no_grad():  # evaluation and decoding step the modules
            model(SRC, SRC_LEN, TGT)
        assert loop.call_count == 1
    torch.testing.assert_close(fused[0], stepped[0], rtol=1e-10, atol=1e-12)
    assert set(fused[1]) == set(stepped[1]) and "attention.v.weight" in fused[1]
    for name, grad in stepped[1].items():
        torch.testing.assert_close(fused[1][name], grad, rtol=1e-9, atol=1e-12, msg=name)
