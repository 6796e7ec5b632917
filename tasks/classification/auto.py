"""Settings that follow the data: what ``model.arch=auto``, ``data.max_len=0`` and the other ``0`` /
negative "choose for me" values of ``task=classification`` become.

Called once the training texts are tokenized, before the model is built. Every value the user set
explicitly is kept; each choice made here is returned with its reason for the report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import fields

from attnapps.data import scripts

from .model import ARCHS as MODELS

# Per architecture: the longest text it reads by default (tokens), its default sizes, and the learning
# rate it trains well with -- declared by each model class (``defaults``), gathered here.
ARCH_DEFAULTS = {name: model.defaults for name, model in MODELS.items()}
ARCHS = list(ARCH_DEFAULTS)


def percentile(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] if s else 1


SHORT = 128  # tokens: a corpus whose 95th-percentile length is at most this counts as short texts
BILSTM_RATE = 500 * 40  # the BiLSTM ensemble trains ~500 texts/s at 40 tokens on 2 cores (~ 1 / length)
MIN_PASSES = 6  # ... and needs about this many passes over the training set to beat the n-gram model


def choose_arch(p95: int, n_train: int, minutes: float) -> tuple[str, str]:
    """The architecture for ``model.arch=auto`` and why.

    Measured on the valid splits of the development corpora (README): the ensemble of BiLSTMs with
    attention pooling is the most accurate on short texts when it can read them several times over
    (Rotten Tomatoes snippets), and the n-gram attention model everywhere else (long documents,
    e-mails, many short texts in a short budget), where the BiLSTM is too slow to see the data enough.
    ``p95``: the 95th percentile of the training texts' lengths in tokens.
    """
    if p95 > SHORT:
        return "ngram_attention", f"long texts (95th percentile {p95} tokens > {SHORT})"
    passes = math.inf if minutes <= 0 else 60 * minutes * BILSTM_RATE / max(p95, 40) / max(n_train, 1)
    if passes >= MIN_PASSES:
        return "bilstm_attention", (f"short texts (95th percentile {p95} tokens) and the budget lets the BiLSTM "
                                    f"ensemble read the {n_train} training texts ~{min(passes, 99):.0f} times")
    return "ngram_attention", (f"short texts, but the budget lets the BiLSTM ensemble read the {n_train} training "
                               f"texts only ~{passes:.1f} times (< {MIN_PASSES}); the n-gram model is ~4x faster")


UNSPACED_SHARE = 0.1  # a corpus is treated as unspaced once a tenth of its letters are of such scripts
SPARSE_WORDS = 0.1  # ... and its words as too sparse once a tenth of held-out words are rarer than min_freq
CHAR_NGRAMS, CHAR_BUCKETS = 5, 65536  # with character tokens: hashed 2..5-grams (the baseline's 1..5), 2^16 rows each
# ... and, against the memorising of rare n-grams (README, "Your language"): an n-gram vocabulary of those in at
# least 2 training texts (the baseline's min_df), label smoothing and a moving average of the weights; and a vote
# with TF-IDF + logistic regression over the same characters' 1..5-grams (tfidf.py)
CHAR_MIN_COUNT, CHAR_SMOOTHING, CHAR_EMA = 2, 0.1, 0.999


def held_out_oov(texts: list[str], min_freq: int = 2) -> float:
    """Share of the words of the last tenth of ``texts`` seen fewer than ``min_freq`` times in the first
    nine tenths (words as the word tokenizer cuts them): how sparse a word vocabulary would be."""
    cut = max(1, len(texts) * 9 // 10)
    counts = Counter(w for t in texts[:cut] for w in scripts.split_words(scripts.normalize(t).lower()))
    held = [w for t in texts[cut:] for w in scripts.split_words(scripts.normalize(t).lower())]
    return sum(counts[w] < min_freq for w in held) / max(1, len(held))


def choose_tokenizer(profile, oov: float) -> tuple[str, str]:
    """The tokenizer for ``tokenizer.kind=auto`` and why: ``char`` for text written without spaces
    (Chinese, Japanese, Thai, ...: profile from :func:`attnapps.data.scripts.profile`) and for text whose
    words are too sparse to learn from (``oov``, :func:`held_out_oov`: many languages, rich morphology as
    Arabic's attached articles and pronouns, very short texts); ``word`` otherwise.

    Chosen on the valid splits of the development sets (README, "Your language"): characters with hashed
    2..5-grams beat words by 11 points on the 12-language identification set and by 4 on Arabic, tie on
    Chinese; words stay ahead on the English sets (the Rotten Tomatoes snippets: 8% held-out words rarer
    than twice; Arabic: 15%, the language-identification set: 14%).
    """
    mix = profile.top()
    if profile.unspaced >= UNSPACED_SHARE:
        return "char", (f"{profile.unspaced:.0%} of the training letters are of scripts written without spaces "
                        f"({mix}): characters are the units")
    if oov >= SPARSE_WORDS:
        return "char", (f"words are sparse: {oov:.0%} of held-out training words occur less than twice in the rest "
                        f"({mix}): characters and their n-grams generalise")
    return "word", f"words separated by spaces ({mix}), {oov:.0%} of held-out training words rarer than twice"


def text_units(texts: list[str]) -> tuple[str, str]:
    """``char`` or ``word`` for these training texts, and why (:func:`choose_tokenizer` on their scripts and
    on how sparse their words are): what ``tokenizer.kind=auto`` takes and what the baseline reads."""
    return choose_tokenizer(scripts.profile(texts), held_out_oov(texts))


def resolve_tokenizer(cfg, units: tuple[str, str]) -> list[str]:
    """Fill ``tokenizer.kind=auto`` (in place) with ``units`` (:func:`text_units`); return the reasons. With
    character tokens, the n-gram model's unset n-gram order and hash size become 5 and 2^16 (notes say so)."""
    t, m = cfg.tokenizer, cfg.model
    kind, why = units
    if t.kind != "auto":
        notes = [f"tokenizer.kind={t.kind} as set (auto would take {kind}: {why})"]
    else:
        t.kind = kind
        notes = [f"tokenizer.kind={t.kind}: {why}"]
    if t.kind == "char" and m.ngrams == 0:
        m.ngrams, m.buckets = CHAR_NGRAMS, m.buckets or CHAR_BUCKETS
        notes.append(f"model.ngrams={m.ngrams}, model.buckets={m.buckets}: character tokens")
    chars = t.kind == "char"
    if m.label_smoothing < 0:
        m.label_smoothing = CHAR_SMOOTHING if chars else 0.0
    if cfg.trainer.ema < 0:
        cfg.trainer.ema = CHAR_EMA if chars else 0.0
    if m.tfidf == "auto":  # the vote, its share chosen on valid, is never far below the baseline it contains
        m.tfidf = "on"
        notes.append("model.tfidf=on: the model votes with TF-IDF + logistic regression, the share chosen on valid")
    if chars:
        notes.append(f"model.label_smoothing={m.label_smoothing}, trainer.ema={cfg.trainer.ema}: character tokens")
    return notes


def resolve(cfg, lengths: list[int], n_train: int) -> list[str]:
    """Fill the automatic values of ``cfg`` (in place) from the training lengths; return the reasons."""
    m, d, tc = cfg.model, cfg.data, cfg.trainer
    notes, p95 = [], percentile(lengths, 0.95)
    if m.arch == "auto":
        m.arch, why = choose_arch(p95, n_train, tc.max_minutes)
        notes.append(f"model.arch={m.arch}: {why}")
        notes += unused_keys(m)
    a = ARCH_DEFAULTS[m.arch]
    used = {f.name for f in fields(MODELS[m.arch].config_class)}
    if d.max_len <= 0:
        d.max_len = max(8, min(a["max_len"], p95))
        notes.append(f"data.max_len={d.max_len}: 95th percentile of the training lengths is {p95} tokens"
                     + (f", capped at {a['max_len']} for {m.arch}" if p95 > a["max_len"] else ""))
    for key in ("embed_size", "hidden_size", "hops", "ensemble", "ngrams", "buckets"):
        if key in used and getattr(m, key) <= 0:
            setattr(m, key, a[key])
    if "min_count" in used and m.min_count < 0:
        m.min_count = CHAR_MIN_COUNT if cfg.tokenizer.kind == "char" else 0
        if m.min_count:
            notes.append(f"model.min_count={m.min_count}: character tokens")
    if m.dropout < 0:
        # Less data, more regularisation: 0.5 below 5k training texts, 0.3 up to 50k, then 0.2.
        m.dropout = 0.5 if n_train < 5000 else 0.3 if n_train < 50000 else 0.2
        notes.append(f"model.dropout={m.dropout}: {n_train} training texts")
    if tc.lr <= 0:
        tc.lr = a["lr"]
    if tc.batch_size <= 0 and tc.max_tokens <= 0:
        tc.batch_size = a["batch_size"]
    if tc.max_epochs <= 0 and tc.max_minutes <= 0 and tc.max_steps <= 0:
        tc.max_epochs = 15  # no budget given at all: stop after 15 passes (or earlier, by trainer.patience)
    return notes


def unused_keys(m) -> list[str]:
    """``model.*`` keys set (away from their defaults) that the architecture ``auto`` chose does not use:
    reported, since the user could not know which architecture the data would pick."""
    from attnapps.config import ConfigError, check_arch_keys

    from .config import ClassificationModel

    try:
        check_arch_keys(m, ClassificationModel)
    except ConfigError as e:
        return [f"ignored: {e}"]
    return []
