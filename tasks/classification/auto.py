"""Settings that follow the data: what ``model.arch=auto``, ``data.max_len=0`` and the other ``0`` /
negative "choose for me" values of ``task=classification`` become.

Called once the training texts are tokenized, before the model is built. Every value the user set
explicitly is kept; each choice made here is returned with its reason for the report.
"""

from __future__ import annotations

import math
from dataclasses import fields

from .model import ARCHS as MODELS

# Per architecture: the longest text it reads by default (tokens), its default sizes, and the learning
# rate it trains well with (chosen on the valid splits of the four development corpora, see the README).
ARCH_DEFAULTS = {
    "ngram_attention": {"max_len": 1000, "embed_size": 64, "hidden_size": 0, "hops": 2, "lr": 5e-3, "ensemble": 1,
                        "batch_size": 64},
    "han": {"max_len": 1000, "embed_size": 100, "hidden_size": 50, "hops": 1, "lr": 2e-3, "ensemble": 1,
            "batch_size": 32},
    "bilstm_attention": {"max_len": 256, "embed_size": 256, "hidden_size": 128, "hops": 4, "lr": 2e-3, "ensemble": 3,
                         "batch_size": 32},
    "transformer": {"max_len": 512, "embed_size": 0, "hidden_size": 128, "hops": 1, "lr": 1e-3, "ensemble": 1,
                    "batch_size": 32},
}
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
    for key in ("embed_size", "hidden_size", "hops", "ensemble"):
        if key in used and getattr(m, key) <= 0:
            setattr(m, key, a[key])
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
