"""Tokenizers with one interface: character, word (a Unicode regex for every script, needs no nltk data)
and sentencepiece.

Every tokenizer maps text <-> ids with ``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3, is
fitted on training text only, and round-trips through ``state_dict()`` / :func:`tokenizer_from_state`
(plain tensors and lists, so it can live inside a ``weights_only`` checkpoint).
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Iterable

import torch

from attnapps.data import scripts
from attnapps.data.vocab import BOS, EOS, PAD, UNK, Vocab
from attnapps.errors import AttnappsError, ConfigError


class Tokenizer:
    kind: str = ""
    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode` of each text (sentencepiece: on all CPU threads at once)."""
        return [self.encode(t) for t in texts]

    def tokens(self, text: str) -> list[str]:
        """Surface pieces of ``text`` (for labelling attention plots)."""
        return [self.id_to_piece(i) for i in self.encode(text)]

    def id_to_piece(self, i: int) -> str:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError


class _VocabTokenizer(Tokenizer):
    def __init__(self, vocab: Vocab | None = None):
        self.vocab = vocab

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def fit(self, texts: Iterable[str], min_freq: int = 1, max_size: int = 0) -> "_VocabTokenizer":
        self.vocab = Vocab.build((self.split(t) for t in texts), min_freq=min_freq, max_size=max_size)
        return self

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.split(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self.join(self.vocab.decode([int(i) for i in ids]))

    def id_to_piece(self, i: int) -> str:
        return self.vocab.itos[i]

    def state_dict(self) -> dict:
        return {"kind": self.kind, **self.vocab.state_dict(), **self.extra_state()}

    def extra_state(self) -> dict:
        return {}


class CharTokenizer(_VocabTokenizer):
    """One id per Unicode character. ``normalize`` (default ``none``: the text exactly as it is, as a
    character language model needs): ``auto`` / ``nfkc`` / ``nfc`` also collapse each run of whitespace
    into one space (:func:`attnapps.data.scripts.normalize`); optional lowercasing."""

    kind = "char"

    def __init__(self, vocab: Vocab | None = None, lowercase: bool = False, normalize: str = "none"):
        super().__init__(vocab)
        self.lowercase, self.normalize = lowercase, normalize

    def split(self, text: str) -> list[str]:
        if self.normalize != "none":
            text = " ".join(scripts.normalize(text, self.normalize).split())
        return list(text.lower() if self.lowercase else text)

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def extra_state(self) -> dict:
        return normalize_state(self.lowercase, self.normalize)


class WordTokenizer(_VocabTokenizer):
    """Words and punctuation of any script (:func:`attnapps.data.scripts.split_words`: ``\\w+(?:'\\w+)?|[^\\w\\s]``
    on spaced scripts, one token per character of Chinese, Japanese kana, Thai, ..., combining marks
    kept with their letter), after Unicode normalisation (``normalize``: ``auto`` = NFC with full-width
    letters and digits folded; see :func:`attnapps.data.scripts.normalize`); optional lowercasing."""

    kind = "word"

    def __init__(self, vocab: Vocab | None = None, lowercase: bool = True, normalize: str = "auto"):
        super().__init__(vocab)
        self.lowercase, self.normalize = lowercase, normalize

    def split(self, text: str) -> list[str]:
        text = scripts.normalize(text, self.normalize)
        return scripts.split_words(text.lower() if self.lowercase else text)

    def join(self, tokens: list[str]) -> str:
        return scripts.join_words(tokens)

    def extra_state(self) -> dict:
        return normalize_state(self.lowercase, self.normalize)


# sentencepiece trains on at most this many sentences, a fixed random sample of a larger corpus (the
# ``--input_sentence_size=1000000 --shuffle_input_sentence`` its README advises): the vocabulary of a
# million sentences is that of ten million, at a tenth of the time and memory
TRAIN_SENTENCES = 1_000_000
PROFILE_SENTENCES = 100_000


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model (unigram or BPE) trained in memory; its bytes are its state."""

    kind = "sentencepiece"

    def __init__(self, model_bytes: bytes | None = None):
        self.sp = None
        if model_bytes is not None:
            self._load(model_bytes)

    def _load(self, model_bytes: bytes) -> None:
        import sentencepiece as spm

        self.model_bytes = bytes(model_bytes)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)

    def fit(self, texts: Iterable[str], vocab_size: int = 4000, model_type: str = "unigram",
            character_coverage: float = 1.0, byte_fallback: bool = False) -> "SentencePieceTokenizer":
        """``byte_fallback``: a character outside the vocabulary is encoded as its UTF-8 bytes (256 byte
        pieces within ``vocab_size``) instead of ``<unk>``, and decodes back to itself."""
        import sentencepiece as spm

        buf = io.BytesIO()
        if isinstance(texts, Sequence) and len(texts) > TRAIN_SENTENCES:
            # a large corpus: a fixed random sample (sentencepiece's own advice), drawn by position, so a
            # corpus read from disk (a prepared column) is never held whole
            texts = [texts[i] for i in sorted(random.Random(0).sample(range(len(texts)), TRAIN_SENTENCES))]
        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise AttnappsError("sentencepiece: the training text is empty")
        if len(sentences) > TRAIN_SENTENCES:  # (an iterable of unknown length: sampled once read)
            sentences = random.Random(0).sample(sentences, TRAIN_SENTENCES)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=buf,
                vocab_size=vocab_size, model_type=str(model_type), character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, hard_vocab_limit=False,
                num_threads=1, minloglevel=2,
            )
        except RuntimeError as e:  # e.g. "Vocabulary size is smaller than required_chars"
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise AttnappsError(f"tokenizer.vocab_size={vocab_size}: sentencepiece cannot be trained on this "
                                f"training text ({reason}); try another tokenizer.vocab_size") from None
        self._load(buf.getvalue())
        return self

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), num_threads=os.cpu_count() or 1)

    def sample(self, text: str, alpha: float, seed: int) -> list[int]:
        """One segmentation of ``text`` drawn at random (seeded): subword regularisation for a unigram
        model (Kudo 2018, smoothing ``alpha``), BPE-dropout for a BPE one (Provilkov et al. 2020, merge
        dropout ``alpha``)."""
        import sentencepiece as spm

        spm.set_random_generator_seed(seed)
        return self.sp.encode(text, enable_sampling=True, alpha=alpha, nbest_size=-1)

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(i)
        return self.sp.decode(out)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def piece_to_id(self, piece: str) -> int:
        """The piece's id; ``unk_id`` for a piece not in the vocabulary."""
        return int(self.sp.piece_to_id(piece))

    def state_dict(self) -> dict:
        return {"kind": self.kind, "model": torch.frombuffer(bytearray(self.model_bytes), dtype=torch.uint8)}


def normalize_state(lowercase: bool, normalize: str) -> dict:
    # "normalize_rule": 2 marks the ``auto`` that keeps full-width punctuation; without it, a saved ``auto``
    # is the earlier rule (``auto_v1``, NFKC for East Asian text), so old checkpoints read text as they did
    return {"lowercase": lowercase, "normalize": normalize, **({"normalize_rule": 2} if normalize == "auto" else {})}


def saved_normalize(state: dict) -> str:
    form = state.get("normalize", "none")  # checkpoints from before normalisation existed: the text as it came
    return "auto_v1" if form == "auto" and state.get("normalize_rule") != 2 else form


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild any tokenizer from its ``state_dict()``."""
    kind = state["kind"]
    if kind == "sentencepiece":
        return SentencePieceTokenizer(state["model"].numpy().tobytes())
    if kind == "char":
        return CharTokenizer(Vocab(state["itos"]), lowercase=state.get("lowercase", False),
                             normalize=saved_normalize(state))
    if kind == "word":
        return WordTokenizer(Vocab(state["itos"]), lowercase=state.get("lowercase", True),
                             normalize=saved_normalize(state))
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def fit_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 4000, model_type: str = "unigram",
                  min_freq: int = 1, max_size: int = 0, normalize: str | None = None, lowercase: bool | None = None,
                  byte_fallback: bool = False) -> Tokenizer:
    """A tokenizer of ``kind`` (``char`` | ``word`` | ``sentencepiece``) fitted on ``texts``: the one place a
    task's ``tokenizer.*`` keys become a tokenizer. ``min_freq``/``max_size``: char and word;
    ``normalize`` (:func:`attnapps.data.scripts.normalize`) / ``lowercase``: char and word, None = the
    tokenizer's own default (word: ``auto``, lowercased; char: the text exactly as it is, as a character
    language model needs); ``vocab_size``/``model_type``/``byte_fallback``: sentencepiece (which
    normalises with its own NFKC rule)."""
    options = {k: v for k, v in (("normalize", None if normalize is None else str(normalize)),
                                 ("lowercase", lowercase)) if v is not None}
    if kind == "char":
        return CharTokenizer(**options).fit(texts, min_freq=min_freq, max_size=max_size)
    if kind == "word":
        return WordTokenizer(**options).fit(texts, min_freq=min_freq, max_size=max_size)
    if kind == "sentencepiece":
        texts = texts if isinstance(texts, Sequence) else list(texts)  # (a Sequence is read by position)
        # sentencepiece's advice: cover 99.95% of the characters of scripts with thousands of them (CJK), all
        # of the others (judged on at most 100,000 sentences drawn at random: the share of a script is known)
        seen = texts if len(texts) <= PROFILE_SENTENCES else random.Random(0).sample(texts, PROFILE_SENTENCES)
        coverage = 0.9995 if scripts.profile(seen).share(scripts.EAST_ASIAN) > 0.3 else 1.0
        return SentencePieceTokenizer().fit(texts, vocab_size, model_type, character_coverage=coverage,
                                            byte_fallback=byte_fallback)
    raise ConfigError(f"tokenizer.kind={kind!r}: choose char, word or sentencepiece")


@dataclass
class TokenizerState:
    """The fitted state (``Task.state_class``) of a task whose only fitted piece is one tokenizer, saved as
    ``{"tokenizer": ...}``; a task with more (labels, a vocabulary of n-grams) subclasses it."""

    tok: Tokenizer

    def to_dict(self) -> dict:
        return {"tokenizer": self.tok.state_dict()}

    @classmethod
    def from_dict(cls, state: dict) -> "TokenizerState":
        return cls(tokenizer_from_state(state["tokenizer"]))
