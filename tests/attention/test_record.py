"""attention.record: every module's weights from an ordinary forward pass, equal to what the module
returns with need_weights=True, per head, concatenated over decoding steps."""

import pytest
import torch
from torch import nn

from attnapps.attention import build_attention, intervene, lengths_to_mask
from attnapps.attention.record import record
from attnapps.layers.transformer import TransformerDecoder, TransformerEncoder


@pytest.mark.parametrize("name", ["additive", "dot", "general", "scaled_dot", "multihead"])
def test_recorded_weights_are_the_returned_weights(name):
    torch.manual_seed(0)
    attn = build_attention(name, 8, 8, **({"heads": 2} if name == "multihead" else {})).eval()
    q, k = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    mask = lengths_to_mask(torch.tensor([6, 3, 1]), 6)
    _, expected = attn(q, k, mask=mask, need_weights=True)
    with record(attn) as maps:
        out, none = attn(q, k, mask=mask)  # no need_weights: the recorder still sees them
    assert none is None and list(maps) == [""]
    got = maps[""]
    assert got.shape == (3, 2 if name == "multihead" else 1, 4, 6)
    torch.testing.assert_close(got, attn.per_head(expected))
    assert torch.all(got[1, :, :, 3:] == 0) and torch.allclose(got.sum(-1), torch.ones(()))
    assert attn.intervention is None  # restored
    torch.testing.assert_close(out, attn(q, k, mask=mask)[0])  # recording changes nothing


def test_stepwise_calls_are_concatenated_along_the_query_axis():
    attn = build_attention("additive", 5, 5).eval()
    keys = torch.randn(2, 7, 5)
    steps = [torch.randn(2, 1, 5) for _ in range(3)]
    with record(nn.ModuleDict({"att": attn})) as maps:
        for q in steps:
            attn(q, keys)
    full = attn(torch.cat(steps, 1), keys, need_weights=True)[1]  # (2, 3, 7)
    torch.testing.assert_close(maps["att"], full.unsqueeze(1))


def test_every_layer_of_a_transformer_is_recorded_by_name():
    torch.manual_seed(0)
    enc, dec = TransformerEncoder(2, 8, 2, 16).eval(), TransformerDecoder(2, 8, 2, 16).eval()
    model = nn.ModuleDict({"encoder": enc, "decoder": dec})
    x, y = torch.randn(1, 5, 8), torch.randn(1, 4, 8)
    with record(model) as maps:
        memory = enc(x)
        _, last_cross = dec(y, memory, need_weights=True)
    assert set(maps) == {f"encoder.layers.{i}.attn" for i in range(2)} | {
        f"decoder.layers.{i}.{k}" for i in range(2) for k in ("self_attn", "cross_attn")}
    assert maps["encoder.layers.0.attn"].shape == (1, 2, 5, 5)
    assert maps["decoder.layers.1.cross_attn"].shape == (1, 2, 4, 5)
    self_w = maps["decoder.layers.0.self_attn"][0]
    assert torch.all(self_w.triu(1) == 0)  # causal: no weight on later positions
    torch.testing.assert_close(maps["decoder.layers.1.cross_attn"].mean(1), last_cross)  # the decoder's own average


def test_record_does_not_nest_with_an_intervention():
    attn = build_attention("dot", 4, 4)
    with intervene(attn, lambda w: w):
        with pytest.raises(RuntimeError, match="intervened"):
            with record(attn):
                pass
