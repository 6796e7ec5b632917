"""Model building blocks shared by the tasks (all attention comes from :mod:`attnapps.attention`)."""

from attnapps.layers.dropout import Dropout
from attnapps.layers.output import OutputLayer
from attnapps.layers.positional import LearnedPositions, SinusoidalPositions
from attnapps.layers.rnn import RNNEncoder, rnn_states, run_rnn, run_stacked
from attnapps.layers.transformer import (DecoderLayer, EncoderLayer, FeedForward, TransformerDecoder, TransformerEncoder,
                                        dropout_layer)

__all__ = ["Dropout", "OutputLayer", "SinusoidalPositions", "LearnedPositions", "RNNEncoder", "rnn_states", "run_rnn", "run_stacked", "EncoderLayer", "DecoderLayer", "FeedForward",
           "TransformerEncoder", "TransformerDecoder", "dropout_layer"]
