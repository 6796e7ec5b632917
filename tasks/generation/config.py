"""``task=generation``'s configuration: data, tokenizer, model (one dataclass per architecture, in
``model.py``), sampling; and ``attnapps.predict``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnapps.data import hub
from attnapps.config import (
    OnError, RunConfig, SentencePieceType, TrainerConfig, at_least, between, choice, model_section, opt)

from .model import ARCHS


DataFormat = choice("DataFormat", ["txt", "wikitext"])
TokenizerKind = choice("TokenizerKind", ["char", "sentencepiece"])


@dataclass
class GenerationData:
    path: str = opt("", "DIR with {train,valid,test}.txt, or FILE.txt (split 90/5/5); \"\" = embedded Jane Austen")
    format: DataFormat = opt("txt", "txt | wikitext (DIR/wiki.{train,valid,test}.raw)")
    cache_dir: str = opt("", "prepared data (encoded splits, built once; attnapps/data/prepared.py) under "
                         "<cache_dir>/prepared; \"\" = $ATTNAPPS_CACHE or ~/.cache/attnapps")
    on_error: OnError = opt("raise", "raise | skip (drop and count lines that are not UTF-8)")
    hf: str = opt("", hub.help_text("hf", example="wikitext"))
    hf_config: str = opt("", hub.help_text("hf_config", config="wikitext-103-raw-v1"))
    hf_splits: str = opt("", hub.help_text("hf_splits"))
    hf_columns: str = opt("", hub.help_text("hf_columns", columns="text=text"))


@dataclass
class GenerationTokenizer:
    kind: TokenizerKind = opt("char", "char | sentencepiece")
    vocab_size: int = opt(2000, "sentencepiece", check=at_least(8))
    model_type: SentencePieceType = opt("unigram", "sentencepiece: unigram | bpe")


GenerationModel = model_section("GenerationModel", ARCHS, "lstm_attention",
                                "lstm_attention (chosen on valid, README) | transformer (decoder-only, GPT)")


@dataclass
class GenerationSample:
    prompt: str = opt("It is a truth", "report samples start here")
    max_new_tokens: int = opt(300, "tokens generated", check=at_least(1))
    temperatures: list[float] = opt([0.5, 0.8, 1.0], "one report sample per temperature (0 = greedy)")
    top_k: int = opt(0, "sample from the k most likely tokens only (0 = off)", check=at_least(0))
    top_p: float = opt(1.0, "nucleus sampling: the smallest set of tokens with this much probability (1 = off)",
                       check=between(0, 1, lo_open=True))
    seed: int = opt(0, "sampling seed")
    heatmap_layer: int = opt(-1, "the attention heatmap's layer (-1 = last) and head")
    heatmap_head: int = opt(0, "the attention heatmap's head")
    heatmap_tokens: int = opt(48, "the last N tokens of a generated passage", check=at_least(1))
    eval_tokens: int = opt(65536, "tokens of valid scored at each evaluation during training (0 = all)",
                           check=at_least(0))


@dataclass
class GenerationConfig(RunConfig):
    task_name: str = "generation"
    data: GenerationData = field(default_factory=GenerationData)
    tokenizer: GenerationTokenizer = field(default_factory=GenerationTokenizer)
    model: GenerationModel = field(default_factory=GenerationModel)
    sample: GenerationSample = field(default_factory=GenerationSample)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=20, max_minutes=6.0, batch_size=32, lr=3e-3, warmup_steps=100, schedule="cosine",
        weight_decay=0.1, betas=(0.9, 0.99), clip_grad_norm=1.0, eval_every=250, eval_max_batches=8, patience=0,
        precision="auto"))


@dataclass
class GenerationPredict:
    prompt: str = opt("It is a truth", "the text to continue")
    max_new_tokens: int = opt(200, "tokens generated", check=at_least(1))
    temperature: float = opt(0.8, "0 = greedy", check=at_least(0))
    top_k: int = opt(0, "sample from the k most likely tokens only (0 = off)", check=at_least(0))
    top_p: float = opt(1.0, "nucleus sampling: the smallest set of tokens with this much probability (1 = off)",
                       check=between(0, 1, lo_open=True))
    seed: int = opt(0, "sampling seed")
    no_repeat_ngram: int = opt(0, "no n-gram of this many tokens twice in the continuation (0 = off)",
                               check=at_least(0))
    repetition_penalty: float = opt(1.0, "each token already in the continuation: its log-probability times this, "
                                    "then renormalised (Keskar et al. 2019; 1 = off)", check=at_least(1))
    stop: str = opt("", "stop once the continuation contains this string")
    cache: bool = opt(True, "incremental key/value cache (false: recompute the window each token)")
