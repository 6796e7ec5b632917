"""multihead against torch.nn.MultiheadAttention, its SDPA fast path, and its key/value cache."""

import pytest
import torch
from torch import nn

from attnapps.attention import KVCache, MultiheadAttention, causal_mask, invert, lengths_to_mask


def pair(e=16, heads=4, kdim=None, vdim=None):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(e, heads, batch_first=True, kdim=kdim, vdim=vdim)
    ours = MultiheadAttention(e, kdim, vdim, heads=heads)
    ours.load_state_dict(ref.state_dict())  # same parameter layout
    with torch.no_grad():  # nn.MultiheadAttention starts with zero biases: make the check sharper
        ours.in_proj_bias.normal_()
        ref.in_proj_bias.copy_(ours.in_proj_bias)
    return ours.eval(), ref.eval()


@pytest.mark.parametrize("masked", [False, True])
def test_matches_nn_multihead_self_attention(masked):
    ours, ref = pair()
    x = torch.randn(3, 7, 16)
    mask = lengths_to_mask(torch.tensor([7, 4, 2]), 7) if masked else None
    out_r, w_r = ref(x, x, x, key_padding_mask=invert(mask), need_weights=True)
    out_o, w_o = ours(x, x, x, mask=mask, need_weights=True)
    assert torch.allclose(out_o, out_r, atol=1e-5)
    assert torch.allclose(w_o.mean(1), w_r, atol=1e-6)  # nn averages heads by default
    out_fast, _ = ours(x, x, x, mask=mask)
    assert torch.allclose(out_fast, out_r, atol=1e-5)


def test_matches_nn_multihead_cross_attention_with_other_sizes_and_3d_mask():
    ours, ref = pair(kdim=6, vdim=5)
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 9, 6), torch.randn(2, 9, 5)
    mask = torch.rand(2, 4, 9) > 0.3
    mask[:, :, 0] = True  # nn.MultiheadAttention gives NaN on fully-masked rows; avoid them here
    attn_mask_ref = invert(mask).repeat_interleave(4, dim=0)  # (batch*heads, q, k), True = ignore
    out_r, w_r = ref(q, k, v, attn_mask=attn_mask_ref)
    out_o, w_o = ours(q, k, v, mask=mask, need_weights=True)
    assert torch.allclose(out_o, out_r, atol=1e-5) and torch.allclose(w_o.mean(1), w_r, atol=1e-6)


def test_matches_nn_multihead_cross_attention_over_one_memory():
    """Same sizes, keys = values (a decoder over its encoder's memory): the fused key/value matmul."""
    ours, ref = pair()
    q, memory = torch.randn(3, 4, 16), torch.randn(3, 9, 16)
    mask = lengths_to_mask(torch.tensor([9, 5, 1]), 9)
    out_r, w_r = ref(q, memory, memory, key_padding_mask=invert(mask))
    out_o, w_o = ours(q, memory, memory, mask=mask, need_weights=True)
    assert torch.allclose(out_o, out_r, atol=1e-5) and torch.allclose(w_o.mean(1), w_r, atol=1e-6)
    cache = KVCache(static=True)
    ours(q[:, :1], memory, memory, mask=mask, cache=cache)  # the memory projected once, as in decoding
    k_ref = torch.nn.functional.linear(memory, ref.in_proj_weight[16:32], ref.in_proj_bias[16:32])
    assert torch.allclose(cache.k, k_ref.view(3, 9, 4, 4).transpose(1, 2), atol=1e-6)


def test_causal_matches_nn_with_causal_mask():
    ours, ref = pair()
    x = torch.randn(2, 6, 16)
    out_r, _ = ref(x, x, x, attn_mask=invert(causal_mask(6)[0]))
    assert torch.allclose(ours(x, x, x, is_causal=True)[0], out_r, atol=1e-5)


def test_sdpa_path_equals_explicit_path_with_grads():
    ours, _ = pair()
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([5, 3]), 5)
    a, _ = ours(x, x, x, mask=mask, need_weights=True)
    (ga,) = torch.autograd.grad(a.sum(), x)
    b, _ = ours(x, x, x, mask=mask)
    (gb,) = torch.autograd.grad(b.sum(), x)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, gb, atol=1e-5)


def test_incremental_cache_equals_full_causal_attention():
    ours, _ = pair()
    x = torch.randn(2, 6, 16)
    full, _ = ours(x, x, x, is_causal=True)
    cache = KVCache()
    steps = [ours(x[:, t:t + 1], x[:, t:t + 1], x[:, t:t + 1], cache=cache)[0] for t in range(6)]
    assert len(cache) == 6
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    # a chunk of several new positions after a cached prefix (bottom-right causal alignment)
    cache = KVCache()
    first, _ = ours(x[:, :2], x[:, :2], x[:, :2], is_causal=True, cache=cache)
    rest, _ = ours(x[:, 2:], x[:, 2:], x[:, 2:], is_causal=True, cache=cache)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def test_static_cache_projects_memory_once_and_reorders():
    ours, _ = pair()
    q, mem = torch.randn(3, 1, 16), torch.randn(3, 8, 16)
    cache = KVCache(static=True)
    a, _ = ours(q, mem, mem, cache=cache)
    b, _ = ours(q, torch.zeros_like(mem), None, cache=cache)  # memory ignored: cached projection used
    assert torch.allclose(a, b)
    idx = torch.tensor([2, 0])
    c, _ = ours(q[idx], None, None, cache=cache.reorder(idx))
    assert torch.allclose(c, a[idx], atol=1e-6)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(10, heads=3)


def _kernel_dtypes(monkeypatch):
    """Record the dtype of the queries each SDPA kernel call receives."""
    import torch.nn.functional as F

    seen, kernel = [], F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(q.dtype)
        return kernel(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


@pytest.mark.parametrize("length,head,trains_fp32", [(20, 16, True), (600, 32, True), (100, 128, True),
                                                     (200, 64, False), (100, 192, False)])
def test_bf16_training_attention_runs_its_kernel_in_fp32_where_the_cpu_bf16_backward_is_slow(
        monkeypatch, length, head, trains_fp32):
    """Under bf16 autocast on the CPU, a differentiated fast path gets fp32 inputs for narrow heads or
    short keys (scripts/bench_sdpa_precision.py) and bf16 otherwise; the output stays bf16, the gradients
    match an fp32 reference to bf16's precision, and inference keeps the kernel in bf16."""
    seen = _kernel_dtypes(monkeypatch)
    torch.manual_seed(0)
    heads = 2
    attn = MultiheadAttention(heads * head, heads=heads)
    x = torch.randn(2, length, heads * head, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attn(x, x, x, is_causal=True)
    assert out.dtype == torch.bfloat16
    assert seen == [torch.float32 if trains_fp32 else torch.bfloat16]
    out.float().pow(2).sum().backward()
    grad, x.grad = x.grad, None
    ref, _ = attn(x, x, x, is_causal=True)  # fp32 throughout
    ref.pow(2).sum().backward()
    assert torch.allclose(grad, x.grad, rtol=0.1, atol=0.05 * x.grad.abs().max().item())
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x, x, x, is_causal=True)
    assert seen == [torch.bfloat16]  # inference: bf16's forward is the faster one
