"""Data building blocks shared by the tasks: tokenizers, vocabularies, length-bucketed batching."""

from attnapps.data.batching import BucketBatchSampler, pad_batch, to_device
from attnapps.data.tokenizers import (
    CharTokenizer, SentencePieceTokenizer, Tokenizer, TokenizerState, WordTokenizer, fit_tokenizer,
    tokenizer_from_state,
)
from attnapps.data.vocab import Vocab

__all__ = ["BucketBatchSampler", "pad_batch", "to_device", "Tokenizer", "CharTokenizer", "WordTokenizer",
           "SentencePieceTokenizer", "TokenizerState", "fit_tokenizer", "tokenizer_from_state", "Vocab"]
