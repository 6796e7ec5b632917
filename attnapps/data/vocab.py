"""A token <-> id vocabulary with special symbols at fixed ids."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Vocab:
    """``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3, then tokens by frequency (ties by
    first appearance order of ``Counter.most_common``, i.e. deterministic)."""

    def __init__(self, tokens: Iterable[str]):
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], min_freq: int = 1, max_size: int = 0,
              specials: list[str] = SPECIALS) -> "Vocab":
        counts = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in specials),
                       key=lambda w: (-counts[w], w))
        if max_size:
            words = words[:max(0, max_size - len(specials))]
        return cls(list(specials) + words)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        out = []
        for i in ids:
            tok = self.itos[i]
            if strip_specials and i < len(SPECIALS):
                if i == EOS:
                    break
                continue
            out.append(tok)
        return out

    def state_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state(cls, state: dict) -> "Vocab":
        return cls(state["itos"])
