"""run_rnn: the same states and gradients as pack_padded_sequence + pad_packed_sequence, padding read never."""

import pytest
import torch
from torch import nn

from attnapps.layers.rnn import rnn_states, run_rnn


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_run_rnn_equals_packed_reference_values_and_gradients(cell):
    torch.manual_seed(0)
    rnn = cell(6, 5, batch_first=True, bidirectional=True)
    x = torch.randn(4, 9, 6, requires_grad=True)
    lengths = torch.tensor([9, 3, 1, 6])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=11)
    ours, _ = run_rnn(rnn, nn.functional.pad(x, (0, 0, 0, 2)), lengths)  # two more padding steps
    assert ours.shape == (4, 11, 10) and torch.equal(ours, ref)
    g_ref, = torch.autograd.grad((ref * torch.arange(110.).view(1, 11, 10)).sum(), x)
    g_ours, = torch.autograd.grad((ours * torch.arange(110.).view(1, 11, 10)).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_run_rnn_ignores_what_is_in_the_padding():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, batch_first=True, bidirectional=True)
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([2, 5])
    noisy = x.clone()
    noisy[0, 2:] = 100.0
    a, _ = run_rnn(rnn, x, lengths)
    b, _ = run_rnn(rnn, noisy, lengths)
    assert torch.equal(a, b) and (a[0, 2:] == 0).all()


@pytest.mark.parametrize("cell, layers", [(nn.GRU, 1), (nn.LSTM, 1), (nn.LSTM, 2)])
def test_rnn_states_equal_the_packed_reference(cell, layers):
    """The right-aligned trick (one-layer bidirectional) and the packed fallback give the packed states."""
    torch.manual_seed(0)
    rnn = cell(6, 5, num_layers=layers, batch_first=True, bidirectional=True)
    x = torch.randn(4, 9, 6, requires_grad=True)
    lengths = torch.tensor([9, 3, 1, 6])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=9)
    ours = rnn_states(rnn, x, lengths)
    assert torch.allclose(ours, ref, atol=1e-6) and (ours[1, 3:] == 0).all()
    g_ref, = torch.autograd.grad((ref * torch.arange(90.).view(1, 9, 10)).sum(), x)
    g_ours, = torch.autograd.grad((ours * torch.arange(90.).view(1, 9, 10)).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional", [(1, True), (1, False), (2, True), (2, False)])
def test_unpacked_run_equals_packed(cell, layers, bidirectional):
    """The form ONNX export traces (no packed sequences) gives the packed run's states and final states."""
    from attnapps.layers.rnn import run_rnn, run_unpacked

    torch.manual_seed(0)
    rnn = (nn.GRU if cell == "gru" else nn.LSTM)(5, 4, num_layers=layers, batch_first=True,
                                                 bidirectional=bidirectional).eval()
    lengths = torch.tensor([7, 2, 4])
    x = torch.randn(3, 7, 5) * (torch.arange(7)[None] < lengths[:, None]).unsqueeze(-1)
    with torch.no_grad():
        (a, ha), (b, hb) = run_rnn(rnn, x, lengths), run_unpacked(rnn, x, lengths)
    ha, hb = (ha[0], hb[0]) if cell == "lstm" else (ha, hb)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(ha, hb, atol=1e-6)
    assert a.abs().sum() > 0 and float(b[1, 2:].abs().max()) == 0.0  # padding stays zero
