"""Each variant against hand-computed scores and weights, masks, padding and gradients."""

import math

import pytest
import torch
from torch import nn

from attnapps.attention import (
    build_attention, causal_mask, get_attention_class, invert, lengths_to_mask, list_attention, masked_softmax,
)
from attnapps.errors import ConfigError

torch.manual_seed(0)
ALL = ["additive", "dot", "general", "scaled_dot", "multihead"]


def make(name, d=8, heads=2, dtype=torch.float32):
    torch.manual_seed(1)
    return build_attention(name, d, d, heads=heads).to(dtype)


def test_registry_lists_every_variant_and_rejects_unknown():
    assert list_attention() == sorted(ALL)
    with pytest.raises(ConfigError, match="unknown attention 'dott'.*additive"):
        build_attention("dott", 4)


def test_a_misspelt_option_is_an_error_and_unused_common_options_are_not_passed():
    with pytest.raises(TypeError, match="unknown option.*haeds"):
        build_attention("multihead", 8, haeds=2)
    assert build_attention("dot", 8, heads=2, dropout=0.3).heads == 1  # common options a variant has no use for
    with pytest.raises(TypeError):
        get_attention_class("dot")(8, 8, None, heads=2)  # the class itself takes no stray keywords


@pytest.mark.parametrize("name", ALL)
def test_every_variant_gives_its_weights_in_one_shape_through_the_helpers(name):
    attn = make(name).eval()
    q, k = torch.randn(3, 2, 8), torch.randn(3, 5, 8)
    mask = lengths_to_mask(torch.tensor([5, 3, 1]), 5)
    _, w = attn(q, k, mask=mask, need_weights=True)
    avg, heads = attn.average_heads(w), attn.per_head(w)
    assert avg.shape == (3, 2, 5) and heads.shape == (3, attn.heads, 2, 5)
    torch.testing.assert_close(avg, heads.mean(1))
    torch.testing.assert_close(avg.sum(-1), torch.ones(3, 2))
    assert (avg[1, :, 3:] == 0).all() and (avg[2, :, 1:] == 0).all()


def test_dot_hand_computed():
    q = torch.tensor([[[1.0, 0.0]]])  # (1, 1, 2)
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])  # (1, 3, 2)
    v = torch.tensor([[[1.0], [2.0], [3.0]]])
    ctx, w = build_attention("dot", 2)(q, k, v, need_weights=True)
    e = torch.tensor([math.e, 1.0, math.e ** 2])
    expected = e / e.sum()
    assert torch.allclose(w[0, 0], expected)
    assert torch.allclose(ctx[0, 0, 0], (expected * torch.tensor([1.0, 2.0, 3.0])).sum())


def test_scaled_dot_hand_computed_both_paths():
    q = torch.tensor([[[2.0, 0.0, 0.0, 0.0]]])  # sqrt(4) = 2 -> scores = k[:,0]
    k = torch.tensor([[[1.0, 0, 0, 0], [0.0, 0, 0, 0]]])
    v = torch.tensor([[[10.0], [20.0]]])
    attn = build_attention("scaled_dot", 4)
    ctx_w, w = attn(q, k, v, need_weights=True)
    p = math.e / (math.e + 1)
    assert torch.allclose(w[0, 0], torch.tensor([p, 1 - p]))
    assert torch.allclose(ctx_w[0, 0, 0], torch.tensor(10 * p + 20 * (1 - p)))
    ctx_fast, none = attn(q, k, v)
    assert none is None and torch.allclose(ctx_fast, ctx_w)


def test_general_hand_computed():
    attn = build_attention("general", 2, 3)
    with torch.no_grad():
        attn.weight.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))  # W applied to keys
    q = torch.tensor([[[1.0, 1.0]]])
    k = torch.tensor([[[1.0, 5.0, 0.0], [0.0, 0.0, 1.0]]])  # W k = [1, 0], [0, 2] -> scores 1, 2
    _, w = attn(q, k, need_weights=True)
    assert torch.allclose(w[0, 0], torch.softmax(torch.tensor([1.0, 2.0]), 0))


def test_additive_hand_computed():
    attn = build_attention("additive", 1, 1, hidden_size=1)
    with torch.no_grad():
        attn.query_proj.weight.fill_(1.0)
        attn.key_proj.weight.fill_(2.0)
        attn.key_proj.bias.fill_(0.5)
        attn.v.weight.fill_(3.0)
    q = torch.tensor([[[0.2]]])
    k = torch.tensor([[[1.0], [-1.0]]])
    _, w = attn(q, k, need_weights=True)
    s = torch.tensor([3 * math.tanh(0.2 + 2 + 0.5), 3 * math.tanh(0.2 - 2 + 0.5)])
    assert torch.allclose(w[0, 0], torch.softmax(s, 0))


def test_general_reproduces_seed_projection_model():
    """Seed model: project query and key to a common size with A, B; softmax((A q).(B k)); W = A^T B."""
    torch.manual_seed(0)
    A, B = nn.Linear(5, 4, bias=False), nn.Linear(3, 4, bias=False)
    q, k = torch.randn(2, 6, 5), torch.randn(2, 7, 3)
    seed_w = torch.softmax(A(q) @ B(k).transpose(1, 2), -1)
    general = build_attention("general", 5, 3)
    with torch.no_grad():
        general.weight.weight.copy_(A.weight.T @ B.weight)  # (5, 3)
    _, w = general(q, k, need_weights=True)
    assert torch.allclose(w, seed_w, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_weights_sum_to_one_and_masked_are_exactly_zero(name):
    attn = make(name)
    q, k = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    mask = lengths_to_mask(torch.tensor([6, 3, 1]), 6)
    _, w = attn(q, k, mask=mask, need_weights=True)
    w = w if w.dim() == 3 else w.flatten(0, 1).view(3, -1, 4, 6).flatten(1, 2)  # heads into q dim
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]))
    assert (w.masked_select(~mask.unsqueeze(1).expand_as(w)) == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_padding_does_not_change_outputs(name):
    attn = make(name).eval()
    q, k = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    ctx, _ = attn(q, k, need_weights=True)
    k_padded = torch.cat([k, torch.randn(1, 5, 8) * 100], dim=1)  # garbage padding
    mask = lengths_to_mask(torch.tensor([4]), 9)
    for need in (True, False):
        ctx_p, _ = attn(q, k_padded, mask=mask, need_weights=need)
        assert torch.allclose(ctx, ctx_p, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("need", [True, False])
def test_fully_masked_rows_give_zero_not_nan(name, need):
    attn = make(name)
    q, k = torch.randn(2, 3, 8, requires_grad=True), torch.randn(2, 5, 8)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 2] = False  # query 2 of example 1 may attend nothing
    mask[0] = False  # example 0 may attend nothing at all
    ctx, w = attn(q, k, mask=mask, need_weights=need)
    if name != "multihead":  # multihead adds the output projection's bias to the zero context
        assert (ctx[0] == 0).all() and (ctx[1, 2] == 0).all()
    else:
        bias = attn.out_proj.bias
        assert torch.allclose(ctx[0], bias.expand_as(ctx[0])) and torch.allclose(ctx[1, 2], bias)
    if need:
        assert (w[0] == 0).all()
    ctx.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_causal_flag_equals_explicit_causal_mask(name):
    attn = make(name).eval()
    x = torch.randn(2, 5, 8)
    a, wa = attn(x, x, is_causal=True, need_weights=True)
    b, wb = attn(x, x, mask=causal_mask(5).expand(2, 5, 5), need_weights=True)
    c, _ = attn(x, x, is_causal=True)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-5)
    assert torch.allclose(wa, wb)
    # changing a future position never changes earlier outputs
    y = x.clone()
    y[:, 3] += 1.0
    d, _ = attn(y, y, is_causal=True)
    assert torch.allclose(a[:, :3], d[:, :3], atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name):
    attn = make(name, d=4, heads=2, dtype=torch.float64)
    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([5, 2]), 5)
    for need in (True, False):
        assert torch.autograd.gradcheck(lambda q, k: attn(q, k, mask=mask, need_weights=need)[0], (q, k))


@pytest.mark.parametrize("name", ["additive", "general"])
def test_precomputed_keys_equal_recomputed(name):
    attn = make(name)
    q, k = torch.randn(2, 1, 8), torch.randn(2, 7, 8)
    pk = attn.project_keys(k)
    assert torch.allclose(attn(q, k, projected_keys=pk)[0], attn(q, k)[0])


def test_dot_rejects_size_mismatch():
    with pytest.raises(ValueError, match="general"):
        build_attention("dot", 4, 5)


def test_masked_softmax_matches_softmax_when_unmasked():
    s = torch.randn(3, 4, 5)
    assert torch.equal(masked_softmax(s, None), torch.softmax(s, -1))
    assert torch.allclose(masked_softmax(s, torch.ones(3, 4, 5, dtype=torch.bool)), torch.softmax(s, -1))


def test_invert_is_the_boundary_conversion():
    m = lengths_to_mask(torch.tensor([2, 3]), 3)
    assert torch.equal(invert(m), torch.tensor([[False, False, True], [False, False, False]]))
