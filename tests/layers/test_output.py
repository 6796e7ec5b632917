"""OutputLayer: nn.Linear's parameters and function, in bf16 (fp32 out) only while training with the flag set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnapps.layers import OutputLayer
from attnapps.layers.output import set_bf16_output


def layer_and_input():
    torch.manual_seed(0)
    return OutputLayer(16, 40), torch.randn(3, 5, 16)


def test_it_is_a_linear_with_the_same_state_dict():
    torch.manual_seed(0)
    linear = nn.Linear(16, 40)
    out = OutputLayer(16, 40)
    out.load_state_dict(linear.state_dict())  # strict: the same keys and shapes
    x = torch.randn(4, 16)
    assert torch.equal(out(x), linear(x))


def test_bf16_while_training_fp32_out_and_fp32_in_evaluation():
    layer, x = layer_and_input()
    fp32 = F.linear(x, layer.weight, layer.bias)
    set_bf16_output(layer, True)
    y = layer(x)  # training mode
    assert y.dtype == torch.float32
    assert torch.equal(y, F.linear(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16()).float())
    assert not torch.equal(y, fp32)
    torch.testing.assert_close(y, fp32, rtol=0.02, atol=0.02)  # within bf16's rounding
    layer.eval()  # validation, decoding, predict, serving: fp32 whatever the flag
    assert torch.equal(layer(x), fp32)
    layer.train()
    set_bf16_output(layer, False)
    assert torch.equal(layer(x), fp32)


def test_gradients_are_fp32_and_close_to_fp32s():
    layer, x = layer_and_input()
    target = torch.randint(0, 40, (3, 5))
    grads = []
    for on in (False, True):
        set_bf16_output(layer, on)
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        F.cross_entropy(layer(xi).flatten(0, 1), target.flatten()).backward()
        grads.append([xi.grad, layer.weight.grad, layer.bias.grad])
    for fp32, bf16 in zip(*grads):
        assert bf16.dtype == torch.float32
        torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=2e-3)


def test_an_enclosing_autocast_decides():
    layer, x = layer_and_input()
    set_bf16_output(layer, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # the whole model's autocast (trainer.precision=bf16) as before


def test_set_bf16_output_counts_the_layers():
    model = nn.Sequential(nn.Linear(4, 4), OutputLayer(4, 8), nn.Sequential(OutputLayer(8, 2)))
    assert set_bf16_output(model, True) == 2
    assert [getattr(m, "bf16", None) for m in (model[0], model[1], model[2][0])] == [None, True, True]
    assert set_bf16_output(nn.Linear(2, 2)) == 0

