"""The core's dropout: nn.Dropout's function (rate, scale, unbiased, gradient = the mask), with its own mask
on the CPU; torch's where it says it falls back; and stacked RNNs with the dropout drawn between layers."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch

import attnapps.layers.dropout as dropout_module
import attnapps.layers.rnn as rnn_module
from attnapps.layers import Dropout, run_stacked
from attnapps.layers.dropout import dropout, keep_rate, set_fast


@pytest.fixture(autouse=True)
def fast():
    set_fast(True)
    yield
    set_fast(True)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rate_and_scale(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype)
    y = dropout(x, p)
    assert y.dtype == dtype
    kept = y != 0
    n = x.numel()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sd  # the rate, within 5 standard errors
    scale = (1 / torch.tensor(keep_rate(p))).to(dtype)  # survivors are scaled by 1/keep, in the input's dtype
    assert torch.equal(y[kept], scale.expand(int(kept.sum())))


def test_rounded_rate_is_exact_inverse():
    assert keep_rate(0.1) == 1 - 6554 / 65536  # p rounded to a multiple of 1/65536
    assert keep_rate(0.25) == 0.75
    torch.manual_seed(1)
    x = torch.randn(64, 50, 256)
    ys = torch.stack([dropout(x, 0.3) for _ in range(400)])
    assert (ys.mean(0) - x).abs().mean() < 0.03  # unbiased: the mean over masks approaches the input
    assert (x.abs().mean() * 0.03) < (ys[0] - x).abs().mean()  # while one mask changes it


def test_values_are_zero_or_scaled_input():
    torch.manual_seed(2)
    x = torch.randn(32, 17, 9)
    y = dropout(x, 0.2)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / keep_rate(0.2))
    assert 0.7 < kept.float().mean() < 0.9


def test_gradient_is_the_mask():
    torch.manual_seed(3)
    x = torch.randn(64, 80, requires_grad=True)
    y = dropout(x, 0.4)
    g = torch.randn_like(y)
    y.backward(g)
    mask = (y != 0).float() / keep_rate(0.4)
    assert torch.allclose(x.grad, g * mask)
    assert torch.allclose(y, x.detach() * mask)


def test_seeded_and_different_per_call():
    x = torch.ones(10_000)
    torch.manual_seed(4)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(4)
    assert torch.equal(dropout(x, 0.5), a)  # the CPU's default generator: manual_seed reproduces it
    assert not torch.equal(a, b)
    # the 16-bit draws of each element are independent: neighbours agree as often as chance says
    agree = ((a != 0) == (b != 0)).float().mean().item()
    assert abs(agree - 0.5) < 0.03


def test_identity_and_fallbacks():
    x = torch.randn(64, 64)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))  # torch's: everything dropped, no inf scale
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)
    with mock.patch.object(dropout_module, "_MaskedScale") as ours:
        set_fast(False)
        dropout(x, 0.5)  # trainer.fast_dropout=false: torch's
        set_fast(True)
        dropout(x.clone(), 0.5, inplace=True)
        dropout(x[:63, :64], 0.5)  # fewer than SMALLEST elements: torch's is faster
        assert not ours.apply.called
        dropout(x, 0.5)
        assert ours.apply.called


def test_module_matches_nn_dropout_interface():
    m = Dropout(0.3)
    assert isinstance(m, torch.nn.Dropout) and m.p == 0.3 and m.state_dict() == {}
    x = torch.randn(100, 100)
    assert m.eval()(x) is x
    m.train()
    torch.manual_seed(5)
    y = m(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.02


@pytest.mark.parametrize("cls,bidirectional", [(torch.nn.LSTM, False), (torch.nn.GRU, True), (torch.nn.LSTM, True)])
def test_run_stacked_is_the_rnn(cls, bidirectional):
    torch.manual_seed(6)
    rnn = cls(8, 6, num_layers=3, batch_first=True, dropout=0.3, bidirectional=bidirectional)
    x = torch.randn(4, 5, 8)
    h0 = torch.randn(3 * (2 if bidirectional else 1), 4, 6)
    hx = (h0, torch.randn_like(h0)) if cls is torch.nn.LSTM else h0
    # with the dropout between layers replaced by the identity, the layer-by-layer run is the RNN itself
    with mock.patch.object(rnn_module, "dropout", lambda t, p: t):
        out, h = run_stacked(rnn.train(), x, hx)
    ref, h_ref = rnn.eval()(x, hx)
    assert torch.allclose(out, ref, atol=1e-6)
    for a, b in zip(h if isinstance(h, tuple) else (h,), h_ref if isinstance(h_ref, tuple) else (h_ref,)):
        assert torch.allclose(a, b, atol=1e-6)
    # and the dropout is applied between layers (here: the last layer reads zeros), with the rate asked for
    seen = []
    with mock.patch.object(rnn_module, "dropout", lambda t, p: seen.append(p) or t * 0):
        out, _ = run_stacked(rnn.train(), x)
    last = cls(12 if bidirectional else 6, 6, batch_first=True, bidirectional=bidirectional)
    last.load_state_dict({k.replace("_l2", "_l0"): v for k, v in rnn.state_dict().items() if "_l2" in k})
    assert seen == [0.3, 0.3]
    assert torch.allclose(out, last(torch.zeros(4, 5, 12 if bidirectional else 6))[0], atol=1e-6)


def test_run_stacked_gradients_and_fallback():
    torch.manual_seed(7)
    rnn = torch.nn.LSTM(8, 6, num_layers=2, batch_first=True, dropout=0.5)
    x = torch.randn(3, 4, 8, requires_grad=True)
    out, _ = run_stacked(rnn.train(), x)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rnn.parameters())
    with mock.patch.object(torch, "lstm", side_effect=AssertionError("layer by layer")):
        run_stacked(rnn.eval(), x)  # evaluation: the RNN's own call (nn.LSTM calls the kernel directly)
        rnn.train()
        set_fast(False)
        run_stacked(rnn, x)  # trainer.fast_dropout=false: the RNN's own call, its own dropout
        set_fast(True)
        with pytest.raises(AssertionError, match="layer by layer"):
            run_stacked(rnn, x)
