"""Training-pair augmentation for a small parallel corpus (``augment.*``): what a translator trained on
whole sentences never sees, drawn into its training batches.

A corpus of whole sentences teaches a model that every input is a capitalised sentence ending in a full
stop whose words it knows. Given a single word, a lower-case fragment or a name, number or placeholder it
has never seen, such a model writes a fluent sentence of its training domain instead -- the
hallucination of NMT out of domain (Koehn & Knowles 2017; Müller et al. 2020) -- where the word-by-word
baseline at least copies the unknown string and translates the words it knows. Three kinds of pair,
each replacing a training pair with its probability (``augment.fragments``, ``.passthrough``,
``.shape``), at random but seeded by the batch (a resumed run draws what the uninterrupted one drew):

- **fragments**: a single word and its translation from the training pairs' own IBM Model 1 lexicons,
  where both directions agree (the source word's most probable target word has that source word as its
  most probable source; seen at least twice) -- the "dictionary as training data" of low-resource MT
  (e.g. Kothur et al. 2018);
- **passthrough**: the same random string (digits, a name-like word, or letters with punctuation) put
  at the start or before the final punctuation of both sides: strings the model has never seen are
  copied, in place (the idea behind copy-augmented training and placeholder noise, Dinu et al. 2019);
- **shape**: the source sentence with a lower-case first letter and, on both sides, no final ``.?!``.
"""

from __future__ import annotations

import random
import string

from .lexicon import fit_word_channel

_PASS_CHARS = string.ascii_letters + string.digits + string.punctuation


def dictionary_pairs(train: list[tuple[str, str]], source_words, target_words, join_target,
                     min_count: int = 2) -> list[tuple[str, str]]:
    """``(source word, target word)`` pairs on which IBM Model 1 agrees both ways (see the module
    docstring), words with a letter seen at least ``min_count`` times, in first-seen order.
    ``source_words``/``target_words``: text -> words; ``join_target``: words -> text."""
    forward = fit_word_channel([(g, s) for s, g in train], target_words, source_words, top=1)  # source -> target
    backward = fit_word_channel(train, source_words, target_words, top=1)  # target -> source
    counts: dict[str, int] = {}
    for s, _ in train:
        for w in source_words(s):
            counts[w] = counts.get(w, 0) + 1
    # fit_word_channel's "target" side is the side translated *from*: ids from 2 (0 = NULL, 1 = unseen);
    # its "source" side the side translated *to*: ids from 1
    back_of = {w: i + 2 for i, w in enumerate(backward["target"])}
    pairs = []
    for i, word in enumerate(forward["target"]):
        if counts.get(word, 0) < min_count or not any(c.isalpha() for c in word):
            continue
        t = int(forward["ids"][i + 2, 0])
        if t < 1 or float(forward["probs"][i + 2, 0]) <= 0:
            continue
        translation = forward["source"][t - 1]
        b = back_of.get(translation)
        if b is not None and int(backward["ids"][b, 0]) >= 1 and backward["source"][int(backward["ids"][b, 0]) - 1] == word:
            pairs.append((word, join_target([translation])))
    return pairs


def passthrough_string(rng: random.Random) -> str:
    """A string no dictionary knows: a number, a capitalised letter string (a name), or letters, digits
    and punctuation (a placeholder, a code, a path)."""
    kind = rng.random()
    if kind < 0.3:
        return str(rng.randrange(10 ** rng.randint(1, 4)))
    if kind < 0.6:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))).capitalize()
    return "".join(rng.choice(_PASS_CHARS) for _ in range(rng.randint(2, 9)))


def insert(text: str, token: str, at_start: bool) -> str:
    """``token`` as the first word of ``text``, or its last before a final ``.?!``."""
    if at_start:
        return f"{token} {text}"
    if text[-1:] in (".", "?", "!"):
        return f"{text[:-1].rstrip()} {token}{text[-1]}"
    return f"{text} {token}"


def plain_shape(source: str, target: str) -> tuple[str, str]:
    """The pair as a fragment would look: the source's first letter lower-case, no final ``.?!`` on
    either side."""
    source, target = source.rstrip(".?!").rstrip(), target.rstrip(".?!").rstrip()
    return source[:1].lower() + source[1:], target


class Augmenter:
    """Draws, per training pair, whether it is replaced and by which kind (``draw``), then makes the
    replacement from the pair's texts (``make``); probabilities ``fragments``, ``passthrough``, ``shape``."""

    KINDS = ("fragments", "passthrough", "shape")

    def __init__(self, pairs: list[tuple[str, str]], fragments: float, passthrough: float, shape: float):
        self.pairs = pairs
        self.probs = (fragments if pairs else 0.0, passthrough, shape)  # no agreeing word pair: no fragments

    @property
    def active(self) -> bool:
        return sum(self.probs) > 0

    def draw(self, rng: random.Random) -> str | None:
        r = rng.random()
        for kind, p in zip(self.KINDS, self.probs):
            if r < p:
                return kind
            r -= p
        return None

    def make(self, kind: str, source: str, target: str, rng: random.Random) -> tuple[str, str]:
        if kind == "fragments":
            return rng.choice(self.pairs)
        if kind == "passthrough":
            token, at_start = passthrough_string(rng), rng.random() < 0.5
            return insert(source, token, at_start), insert(target, token, at_start)
        shaped = plain_shape(source, target)
        return shaped if shaped[0] and shaped[1] else (source, target)
