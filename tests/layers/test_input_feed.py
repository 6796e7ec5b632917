"""The input-fed loop with its backward written out: the same outputs and every gradient as stepping
nn.GRU + AdditiveAttention + the combination layer under autograd (fp64), and where it does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnapps.attention import build_attention, intervene, record
from attnapps.layers.input_feed import input_fed_applies, input_fed_loop


def modules(embed=3, hidden=4, d_v=5, d_a=6, dtype=torch.float64):
    torch.manual_seed(0)
    rnn = nn.GRU(embed + hidden, hidden, batch_first=True).to(dtype)
    attention = build_attention("additive", hidden, d_v, hidden_size=d_a).to(dtype)
    combine = nn.Linear(d_v + hidden, hidden).to(dtype)
    return rnn, attention, combine


def stepped(emb, h0, enc, mask, rnn, attention, combine):
    """What a model writes: one nn.GRU call, one attention call and one combination per step."""
    keys = attention.project_keys(enc)
    h, feed, outs, weights = h0.unsqueeze(0), torch.zeros_like(h0), [], []
    for e in emb.unbind(1):
        out, h = rnn(torch.cat([e, feed], -1).unsqueeze(1), h)  # (batch, 1, hidden)
        c, w = attention(out, enc, mask=mask, need_weights=True, projected_keys=keys)
        feed = torch.tanh(combine(torch.cat([c, out], -1))).squeeze(1)
        outs.append(feed)
        weights.append(w.squeeze(1))
    return torch.stack(outs, 1), torch.stack(weights, 1)


def written_out(emb, h0, enc, mask, rnn, attention, combine):
    return input_fed_loop(emb, h0, enc, attention.project_keys(enc), mask, rnn, attention, combine)


def inputs(batch=4, steps=5, src_len=6, embed=3, hidden=4, d_v=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(batch, steps, embed, generator=g, dtype=dtype, requires_grad=True)
    h0 = torch.randn(batch, hidden, generator=g, dtype=dtype, requires_grad=True)
    enc = torch.randn(batch, src_len, d_v, generator=g, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([src_len, 2, 1, 0][:batch])  # a short source, one token, and nothing to attend
    mask = torch.arange(src_len) < lengths.unsqueeze(1)
    return emb, h0, enc, mask


def gradients(fn, with_weights: bool):
    rnn, attention, combine = modules()
    emb, h0, enc, mask = inputs()
    a, w = fn(emb, h0, enc, mask, rnn, attention, combine)
    g = torch.Generator().manual_seed(2)
    loss = (a * torch.randn(a.shape, generator=g, dtype=a.dtype)).sum()
    if with_weights:
        loss = loss + (w * torch.randn(w.shape, generator=g, dtype=w.dtype)).sum()
    loss.backward()
    named = {"emb": emb, "h0": h0, "enc": enc}
    named |= {f"rnn.{k}": p for k, p in rnn.named_parameters()}
    named |= {f"attention.{k}": p for k, p in attention.named_parameters()}
    named |= {f"combine.{k}": p for k, p in combine.named_parameters()}
    return a.detach(), w.detach(), {k: p.grad for k, p in named.items()}


@pytest.mark.parametrize("with_weights", [False, True])
def test_outputs_and_every_gradient_match_the_stepped_modules(with_weights):
    a_ref, w_ref, g_ref = gradients(stepped, with_weights)
    a, w, g = gradients(written_out, with_weights)
    torch.testing.assert_close(a, a_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-12)
    assert w[3].abs().sum() == 0 and (w[2, :, 1:] == 0).all()  # nothing to attend: zeros; one token: all of it
    assert set(g) == set(g_ref) and len(g) == 13  # the three inputs and all ten parameters
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-10, atol=1e-12, msg=name)
        assert g[name].abs().sum() > 0, name  # (each one reaches the loss: no vacuous match)


def test_float32_matches_too():
    rnn, attention, combine = (m.float() for m in modules())
    emb, h0, enc, mask = (x.float() if x.is_floating_point() else x for x in inputs())
    a_ref, w_ref = stepped(emb, h0, enc, mask, rnn, attention, combine)
    a, w = written_out(emb, h0, enc, mask, rnn, attention, combine)
    torch.testing.assert_close(a, a_ref)
    torch.testing.assert_close(w, w_ref)


def test_gradcheck():
    """Against finite differences, not only against autograd."""
    rnn, attention, combine = modules(embed=2, hidden=3, d_v=2, d_a=2)
    emb, h0, enc, mask = inputs(batch=3, steps=3, src_len=3, embed=2, hidden=3, d_v=2)
    keys = attention.project_keys(enc).detach().requires_grad_()

    def fn(emb, h0, enc, keys):
        return input_fed_loop(emb, h0, enc, keys, mask, rnn, attention, combine)

    assert torch.autograd.gradcheck(fn, (emb, h0, enc, keys))


def test_applies_only_where_it_computes_the_same():
    rnn, attention, combine = modules(dtype=torch.float32)
    emb = torch.zeros(2, 3, 3)
    assert input_fed_applies(rnn, attention, combine, emb)
    with torch.no_grad():  # decoding and evaluation: the modules' own calls
        assert not input_fed_applies(rnn, attention, combine, emb)
    assert not input_fed_applies(rnn, attention, combine, emb.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not input_fed_applies(rnn, attention, combine, emb)
    with intervene(attention, lambda w: w):
        assert not input_fed_applies(rnn, attention, combine, emb)
    with record(attention):  # (records by intervening)
        assert not input_fed_applies(rnn, attention, combine, emb)
    handle = combine.register_forward_hook(lambda *_: None)
    assert not input_fed_applies(rnn, attention, combine, emb)
    handle.remove()
    assert not input_fed_applies(nn.LSTM(7, 4), attention, combine, emb)
    assert not input_fed_applies(nn.GRU(7, 4, num_layers=2), attention, combine, emb)
    assert not input_fed_applies(nn.GRU(7, 4, bias=False), attention, combine, emb)
    assert not input_fed_applies(rnn, build_attention("general", 4, 5), combine, emb)
    assert not input_fed_applies(rnn, attention, combine, torch.zeros(2, 3, 5))  # no room for the feed
