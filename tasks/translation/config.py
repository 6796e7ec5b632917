"""``task=translation``'s configuration: data, tokenizer, model (one dataclass per architecture, in
``model.py``), decoding; and ``attnapps.predict``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnapps.data import hub
from attnapps.config import (
    OnError, RunConfig, SentencePieceType, TrainerConfig, at_least, choice, model_section, opt, positive)

from attnapps.decoding import BeamOptions

from .model import ARCHS

Embedded = choice("Embedded", ["en-de", "en-zh"])


@dataclass
class TranslationData:
    path: str = opt("", "DIR with {train,valid,test}.tsv or train.<src_lang>/train.<tgt_lang>; \"\" = the embedded "
                    "dataset data.embedded")
    embedded: Embedded = opt("en-de", "with data.path unset: en-de = Ding dictionary sentences (English->German), "
                             "en-zh = GNOME/GIMP/Inkscape user-interface strings (English->Chinese)")
    src_lang: str = opt("", "source language = file suffix of the line-aligned layout; \"\" = from the file names "
                        "(en when present)")
    tgt_lang: str = opt("", "target language (file suffix; picks sacreBLEU's tokenizer: zh, ja, ko); \"\" = from the "
                        "file names, else from the target text's script")
    reverse: bool = opt(False, "swap source and target (German -> English on the default data)")
    max_len: int = opt(50, "drop training pairs with more subword tokens than this on either side", check=at_least(1))
    on_error: OnError = opt("raise", "raise | skip (skip and count malformed lines)")
    alignments: str = opt("", "gold word alignments of the test split, one Pharaoh line per pair (i-j sure, i?j "
                          "possible; 0-based source-target word indices): the run reports diag.aer")
    extra_test: str = opt("", "more test sets, comma-separated: folders with test.tsv (or test.<src>/test.<tgt>) or "
                          ".tsv files; each scored with the final model as test.<name>.bleu / test.<name>.chrf")
    cache_dir: str = opt("", "prepared data (encoded splits, built once; attnapps/data/prepared.py) under "
                         "<cache_dir>/prepared; \"\" = $ATTNAPPS_CACHE or ~/.cache/attnapps")
    hf: str = opt("", hub.help_text("hf", example="wmt14, bentrevett/multi30k"))
    hf_config: str = opt("", hub.help_text("hf_config", config="de-en for wmt14"))
    hf_splits: str = opt("", hub.help_text("hf_splits"))
    hf_columns: str = opt("", hub.help_text("hf_columns", columns="src=COL, tgt=COL; default: the translation column's data.src_lang/data.tgt_lang keys (English the source when unset), else the two text columns"))


@dataclass
class TranslationTokenizer:
    vocab_size: int = opt(4000, "sentencepiece vocabulary (joint, or per side)", check=at_least(8))
    model_type: SentencePieceType = opt("unigram", "unigram | bpe")
    joint: bool = opt(True, "one vocabulary for both languages (needed for model.share_embeddings)")
    sampling: float = opt(0.0, "> 0: each training batch draws a new segmentation of its sentences -- subword "
                          "regularisation with this smoothing alpha (unigram, Kudo 2018) or BPE-dropout with this "
                          "merge-dropout rate (bpe); 0 = the best segmentation always", check=at_least(0))
    byte_fallback: bool = opt(True, "a character never seen in training becomes its UTF-8 bytes (sentencepiece "
                              "byte_fallback, from tokenizer.vocab_size 1024 on) instead of <unk>, so a source "
                              "string comes out as itself (the word-by-word candidate of decode.hybrid copies it)")


@dataclass
class TranslationAugment:
    fragments: float = opt(0.0, "share of training pairs replaced by a word pair both IBM Model 1 directions agree "
                           "on (tasks/translation/augment.py; measured in the README, off by default)",
                           check=at_least(0))
    passthrough: float = opt(0.0, "share of training pairs given the same random string (number, name, code) on "
                             "both sides: unknown strings are copied", check=at_least(0))
    shape: float = opt(0.0, "share of training pairs without final punctuation and with a lower-case first "
                       "source letter, as fragments look", check=at_least(0))


TranslationModel = model_section("TranslationModel", ARCHS, "rnn",
                                 "rnn (attentional GRU/LSTM encoder-decoder) | transformer")


@dataclass
class TranslationBeam(BeamOptions):  # attnapps.decoding.BeamOptions with translation's values, declared once
    beam: int = opt(12, "beam size (1 = greedy); 12 chosen on valid with decode.channel (README: the re-ranking "
                    "gains with more finished hypotheses to choose from)", check=at_least(1))
    alpha: float = opt(2.0, "GNMT length penalty (0 = none); 2.0 chosen on valid (README: longer outputs, chrF +1.3)",
                       check=at_least(0))
    lexicon_weight: float = opt(1.25, "with model.lexicon: the lexical bias's weight when decoding (1 = as trained; "
                                "1.25 chosen on valid, README)", check=at_least(0))
    channel: float = opt(0.5, "beam search: re-rank the beam's finished hypotheses by log P(y | x) / length "
                         "penalty + this * log P(x | y) under IBM Model 1 fitted target -> source (noisy channel; "
                         "0.5 chosen on valid, README); 0 = off", check=at_least(0))
    hybrid: bool = opt(True, "beam search: the word-by-word IBM Model 1 translation joins the beam's candidates and a "
                       "linear score whose weights the run chose on valid picks one (tasks/translation/hybrid.py; "
                       "replaces decode.channel's re-ranking once chosen); false = the model's candidates only")
    protect: bool = opt(True, "with decode.hybrid: the word-by-word candidate copies a token that looks like code "
                        "whole -- a placeholder (%s, {name}, <b>), anything with a digit, an option (--all), a path, "
                        "an identifier (snake_case, camelCase, ALLCAPS) -- instead of translating its pieces "
                        "(tasks/translation/baseline.py: protected)")


@dataclass
class TranslationDecode(TranslationBeam):  # beam, alpha
    max_len_ratio: float = opt(1.5, "max target tokens = ratio * source tokens + max_len_add", check=positive)
    max_len_add: int = opt(10, "max target tokens = max_len_ratio * source tokens + this", check=at_least(0))
    bleu_tokenize: str = opt("auto", "sacreBLEU tokenizer: auto = as `sacrebleu -l src-tgt` (zh -> zh, ja -> ja-mecab, "
                             "ko -> ko-mecab, else 13a) | 13a | zh | ja-mecab | ko-mecab | char | intl | none")
    valid_subset: int = opt(400, "sentences scored by greedy BLEU at each evaluation during training",
                            check=at_least(0))


@dataclass
class TranslationReport:
    examples: int = opt(10, "sample translations listed in report.md (was decode.samples)", check=at_least(0))
    figures: int = opt(4, "alignment heatmaps in report.md (was decode.plots)", check=at_least(0))
    baseline: bool = opt(True, "fit the word-by-word IBM Model 1 baseline on the training pairs (its settings chosen "
                         "on valid) and report it beside the model: baseline.* in metrics.json")


@dataclass
class TranslationConfig(RunConfig):
    task_name: str = "translation"
    data: TranslationData = field(default_factory=TranslationData)
    tokenizer: TranslationTokenizer = field(default_factory=TranslationTokenizer)
    augment: TranslationAugment = field(default_factory=TranslationAugment)
    model: TranslationModel = field(default_factory=TranslationModel)
    decode: TranslationDecode = field(default_factory=TranslationDecode)
    report: TranslationReport = field(default_factory=TranslationReport)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=40, max_minutes=6.0, batch_size=64, lr=3e-3, warmup_steps=200, schedule="cosine",
        eval_every=500, eval_max_batches=0, clip_grad_norm=1.0, betas=(0.9, 0.98), precision="auto"))


@dataclass
class TranslationPredict(TranslationBeam):  # beam, alpha: by default the run's decode.beam, decode.alpha
    input: str = opt("-", "file with one source sentence per line, or - for stdin")
    output: str = opt("-", "file for the translations, or - for stdout")
    plot_dir: str = opt("", "if set: an alignment heatmap per sentence, DIR/align_<n>.png")
