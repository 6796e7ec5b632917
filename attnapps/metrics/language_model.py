"""Perplexity and bits per character from summed negative log-likelihoods (in nats)."""

from __future__ import annotations

import math


def perplexity(nll_sum: float, tokens: int) -> float:
    """``exp(total NLL / tokens)``: per-token perplexity.

    >>> perplexity(nll_sum=10 * math.log(4), tokens=10)   # as unsure as a fair choice among 4 tokens
    4.0
    """
    return math.exp(nll_sum / max(tokens, 1))


def bits_per_char(nll_sum: float, chars: int) -> float:
    """``total NLL / (chars * ln 2)``: comparable across tokenizers when ``chars`` counts the characters
    of the text the tokens encode.

    >>> bits_per_char(nll_sum=8 * math.log(2), chars=8)   # one fair coin per character
    1.0
    """
    return nll_sum / (max(chars, 1) * math.log(2))
