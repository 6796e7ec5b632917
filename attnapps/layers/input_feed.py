"""The teacher-forced loop of an input-fed GRU decoder with additive attention, its backward pass written
out: the same function as stepping ``nn.GRU`` + :class:`~attnapps.attention.additive.AdditiveAttention` +
the combination layer under autograd, in fewer operators.

One step t (Luong, Pham & Manning 2015, input feeding; Bahdanau, Cho & Bengio 2015, scores)::

    h_t = GRU([e_t; a_{t-1}], h_{t-1})                  a_0 = 0
    u_t = tanh(K + W_q h_t)                              K = W_k enc + b (projected once per batch)
    w_t = masked_softmax(u_t v)                          (batch, src_len)
    c_t = w_t enc                                        (batch, d_v)
    a_t = tanh(W_c [c_t; h_t] + b_c)                     (batch, hidden)

Under autograd each step records dozens of small operators, and their backward functions run one by
one. :func:`input_fed_loop` runs the forward steps without recording, keeps what the backward needs in
preallocated time-major buffers, and its backward walks the steps in reverse with the derivatives written
out (GRU gates, tanh, softmax). The weight gradients are summed over all steps at once: one matmul per
weight over ``tgt_len x batch`` rows instead of one small matmul and one addition per step. The embedding's
part of the GRU's input projection is one matmul over the whole target, before the loop. ``u_t`` (batch x
src_len x hidden a step) is recomputed in the backward instead of stored: on this project's CPU, writing
it to a buffer cost more than computing it twice. On this project's 2-core CPU, the loop's forward and
backward for 64 sentences of 14 target and 13 source steps at 256 units took 25-26 ms against 33 ms
stepped, and the translation default's training step ran 1.17x faster (``scripts/profile_step.py
--tasks translation --variants stepped-loop,default``).

:func:`input_fed_applies` says where it runs: with gradients on, on the CPU, in fp32 or fp64, outside
autocast and ``torch.compile``, for a one-layer unidirectional ``nn.GRU`` with biases, an
``AdditiveAttention`` that no one intervenes on or records (:mod:`attnapps.attention.record` works by
intervening) and modules without hooks. Elsewhere a model steps its modules as usual. Tested against that
under autograd in fp64 (outputs and every gradient); ``scripts/profile_step.py`` measures the step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.ops import aten

from attnapps.attention.additive import AdditiveAttention


def input_fed_applies(rnn: nn.Module, attention: nn.Module, combine: nn.Module, emb: Tensor) -> bool:
    """Whether :func:`input_fed_loop` computes this decoder's loop for ``emb (batch, tgt_len, embed)`` (see the
    module's docstring); False means: step the modules."""
    modules = (rnn, attention, combine)
    return (torch.is_grad_enabled() and emb.device.type == "cpu" and emb.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and type(rnn) is nn.GRU and rnn.num_layers == 1 and not rnn.bidirectional and rnn.bias
            and rnn.input_size == emb.size(-1) + rnn.hidden_size
            and type(attention) is AdditiveAttention and attention.intervention is None
            and type(combine) is nn.Linear and combine.bias is not None
            and not any(m._forward_hooks or m._forward_pre_hooks for m in modules))


def input_fed_loop(emb: Tensor, h0: Tensor, enc: Tensor, keys: Tensor, mask: Tensor, rnn: nn.GRU,
                   attention: AdditiveAttention, combine: nn.Linear) -> tuple[Tensor, Tensor]:
    """``emb (batch, tgt_len, embed)``, the first state ``h0 (batch, hidden)``, the encoder's states ``enc
    (batch, src_len, d_v)``, their projection ``keys = attention.project_keys(enc)`` ``(batch, src_len, d_a)``,
    ``mask (batch, src_len)`` (bool, True = may attend) -> ``a (batch, tgt_len, hidden)``, ``weights (batch,
    tgt_len, src_len)``: every step's attentional state and attention weights, differentiable with respect to
    the inputs and the three modules' parameters."""
    return _InputFedLoop.apply(emb, h0, enc, keys, mask, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0,
                               rnn.bias_hh_l0, attention.query_proj.weight, attention.v.weight, combine.weight,
                               combine.bias)


class _InputFedLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emb, h0, enc, keys, mask, w_ih, w_hh, b_ih, b_hh, w_q, v, w_c, b_c):
        batch, steps, embed = emb.shape
        hidden, src_len, d_v = h0.size(1), keys.size(1), enc.size(2)
        w_if_t = w_ih[:, embed:].t().contiguous()  # (hidden, 3 hidden): the input-fed part of the GRU's input
        w_c_t = w_c[:, :d_v].t().contiguous()  # (d_v, hidden): the context's part of the combination
        w_hq_t = torch.cat([w_c[:, d_v:], w_q]).t()  # (hidden, hidden + d_a): h_t's part of it, and W_q
        ge = torch.addmm(b_ih, emb.transpose(0, 1).reshape(steps * batch, embed), w_ih[:, :embed].t())
        ge = ge.view(steps, batch, 3 * hidden)  # (steps, batch, 3 hidden): the embeddings' part of every step
        blocked = ~mask  # (batch, src_len)
        keep = mask.to(emb.dtype)
        lowest = torch.finfo(emb.dtype).min  # what masked_softmax fills masked scores with
        hs = emb.new_empty(steps + 1, batch, hidden)  # h_0 .. h_T
        feeds = emb.new_empty(steps + 1, batch, hidden)  # a_0 = 0, a_1 .. a_T
        rz = emb.new_empty(steps, batch, 2 * hidden)  # the reset and update gates
        news = emb.new_empty(steps, batch, hidden)  # the candidate state n_t
        gh = emb.new_empty(steps, batch, 3 * hidden)  # W_hh h_{t-1} + b_hh (its n part is gated by r)
        hq = emb.new_empty(steps, batch, hidden + keys.size(2))  # h_t's projections: [W_c_h h_t; W_q h_t]
        weights = emb.new_empty(steps, batch, src_len)
        contexts = emb.new_empty(steps, batch, d_v)
        hs[0], feeds[0] = h0, 0
        for t in range(steps):
            gi = torch.addmm(ge[t], feeds[t], w_if_t)  # (batch, 3 hidden)
            torch.addmm(b_hh, hs[t], w_hh.t(), out=gh[t])  # (batch, 3 hidden)
            r_z = torch.sigmoid(gi[:, :2 * hidden] + gh[t, :, :2 * hidden], out=rz[t])  # (batch, 2 hidden)
            r, z = r_z[:, :hidden], r_z[:, hidden:]
            n = torch.tanh(torch.addcmul(gi[:, 2 * hidden:], r, gh[t, :, 2 * hidden:]), out=news[t])
            h = torch.addcmul(n, z, hs[t] - n, out=hs[t + 1])  # (1 - z) n + z h_{t-1}
            torch.mm(h, w_hq_t, out=hq[t])  # (batch, hidden + d_a)
            u = torch.tanh_(keys + hq[t, :, hidden:].unsqueeze(1))  # (batch, src_len, d_a)
            scores = (u @ v.view(-1, 1)).view(batch, src_len).masked_fill_(blocked, lowest)
            w = torch.mul(torch.softmax(scores, -1), keep, out=weights[t])  # (batch, src_len)
            c = torch.bmm(w.unsqueeze(1), enc, out=contexts[t].unsqueeze(1)).view(batch, d_v)
            torch.tanh(torch.addmm(hq[t, :, :hidden] + b_c, c, w_c_t), out=feeds[t + 1])  # a_t (batch, hidden)
        ctx.save_for_backward(emb, enc, keys, w_ih, w_hh, w_q, v, w_c, hs, feeds, rz, news, gh, hq, weights, contexts)
        # (batch, steps, hidden), contiguous like the stepped loop's stack: torch's dropout draws in memory order
        a = feeds[1:].transpose(0, 1).contiguous()
        return a, weights.transpose(0, 1)  # (.., src_len)

    @staticmethod
    def backward(ctx, grad_a, grad_weights):
        emb, enc, keys, w_ih, w_hh, w_q, v, w_c, hs, feeds, rz, news, gh, hq, weights, contexts = ctx.saved_tensors
        batch, steps, embed = emb.shape
        hidden, src_len, d_v, d_a = hs.size(2), keys.size(1), enc.size(2), keys.size(2)
        w_hq = torch.cat([w_c[:, d_v:], w_q])  # (hidden + d_a, hidden)
        grad_a = grad_a.transpose(0, 1)  # (steps, batch, hidden)
        grad_weights = None if grad_weights is None else grad_weights.transpose(0, 1)  # (steps, batch, src_len)
        g_scores = emb.new_empty(steps, batch, src_len)
        g_contexts = emb.new_empty(steps, batch, d_v)
        g_hq = emb.new_empty(steps, batch, hidden + d_a)  # [g of the combination's pre-activation; g of W_q h_t]
        g_gi = emb.new_empty(steps, batch, 3 * hidden)  # of the GRU's input projection (+ b_ih)
        g_gh = emb.new_empty(steps, batch, 3 * hidden)  # of W_hh h_{t-1} + b_hh
        g_keys = torch.zeros_like(keys)
        g_v = torch.zeros_like(v.view(-1))
        g_feed = torch.zeros_like(hs[0])  # from step t+1's input into a_t
        g_h = torch.zeros_like(hs[0])  # from step t+1 into h_t
        for t in range(steps - 1, -1, -1):
            g_pre = aten.tanh_backward(grad_a[t] + g_feed, feeds[t + 1])  # (batch, hidden)
            g_hq[t, :, :hidden] = g_pre
            g_c = torch.mm(g_pre, w_c[:, :d_v], out=g_contexts[t])  # (batch, d_v)
            w = weights[t]
            g_w = torch.bmm(enc, g_c.unsqueeze(2)).view(batch, src_len)
            if grad_weights is not None:
                g_w = g_w + grad_weights[t]
            g_s = torch.mul(w, g_w - (w * g_w).sum(-1, keepdim=True), out=g_scores[t])  # softmax; masked: w = 0
            u = torch.tanh_(keys + hq[t, :, hidden:].unsqueeze(1))  # (batch, src_len, d_a), recomputed
            g_v += (g_s.view(1, -1) @ u.view(-1, d_a)).view(-1)
            g_u = aten.tanh_backward(g_s.unsqueeze(2) * v.view(-1), u)  # (batch, src_len, d_a)
            g_keys += g_u
            torch.sum(g_u, 1, out=g_hq[t, :, hidden:])
            g_h = torch.addmm(g_h, g_hq[t], w_hq)  # all of h_t's gradient
            r, z = rz[t, :, :hidden], rz[t, :, hidden:]
            n = news[t]
            g_n = aten.tanh_backward(g_h - g_h * z, n)  # (batch, hidden)
            g_rz = torch.cat([g_n * gh[t, :, 2 * hidden:], g_h * (hs[t] - n)], 1)  # of r and z
            g_gi[t, :, :2 * hidden] = aten.sigmoid_backward(g_rz, rz[t])
            g_gi[t, :, 2 * hidden:] = g_n
            g_gh[t, :, :2 * hidden] = g_gi[t, :, :2 * hidden]
            torch.mul(g_n, r, out=g_gh[t, :, 2 * hidden:])
            g_h = torch.addmm(g_h * z, g_gh[t], w_hh)  # into h_{t-1}
            g_feed = g_gi[t] @ w_ih[:, embed:]  # into a_{t-1}

        def rows(x: Tensor) -> Tensor:  # (steps, batch, d) -> (steps x batch, d)
            return x.reshape(steps * batch, -1)

        g_gi, g_gh, g_hq = rows(g_gi), rows(g_gh), rows(g_hq)
        emb_rows = emb.transpose(0, 1).reshape(steps * batch, embed)
        g_w_ih = torch.cat([g_gi.t() @ emb_rows, g_gi.t() @ rows(feeds[:steps])], 1)  # (3 hidden, embed + hidden)
        g_w_hh = g_gh.t() @ rows(hs[:steps])
        g_w_hq = g_hq.t() @ rows(hs[1:])  # (hidden + d_a, hidden)
        g_w_c = torch.cat([g_hq[:, :hidden].t() @ rows(contexts), g_w_hq[:hidden]], 1)  # (hidden, d_v + hidden)
        g_emb = (g_gi @ w_ih[:, :embed]).view(steps, batch, embed).transpose(0, 1)
        g_enc = torch.bmm(weights.permute(1, 2, 0), g_contexts.transpose(0, 1))  # (batch, src_len, d_v)
        return (g_emb, g_h, g_enc, g_keys, None, g_w_ih, g_w_hh, g_gi.sum(0), g_gh.sum(0), g_w_hq[hidden:],
                g_v.view_as(v), g_w_c, g_hq[:, :hidden].sum(0))
