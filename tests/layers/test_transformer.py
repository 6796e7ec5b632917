import torch
from torch import nn

from attnapps.layers import EncoderLayer, FeedForward, dropout_layer


def test_zero_dropout_is_no_layer_at_all_and_keeps_the_parameter_names():
    assert isinstance(dropout_layer(0.0), nn.Identity) and isinstance(dropout_layer(0.1), nn.Dropout)
    with_dropout, without = EncoderLayer(8, 2, 16, dropout=0.1), EncoderLayer(8, 2, 16, dropout=0.0)
    assert isinstance(without.ff[2], nn.Identity) and isinstance(without.drop, nn.Identity)
    assert list(with_dropout.state_dict()) == list(without.state_dict())  # checkpoints load either way
    without.load_state_dict(with_dropout.state_dict())
    x = torch.randn(3, 5, 8)
    with_dropout.eval()  # dropout off: the same function as a layer built without dropout, in training
    without.train()
    torch.testing.assert_close(without(x), with_dropout(x))


def test_feed_forward_with_dropout_still_drops_in_training():
    ff = FeedForward(8, 64, dropout=0.5).train()
    ff[0].bias.data.fill_(1.0)  # every hidden unit positive: GELU(h) > 0, so only dropout makes zeros
    ff[0].weight.data.zero_()
    torch.manual_seed(0)
    hidden = ff[2](ff[1](ff[0](torch.randn(4, 8))))
    assert 0.3 < (hidden == 0).float().mean() < 0.7
