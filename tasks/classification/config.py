"""``task=classification``'s configuration: data, tokenizer, model (one dataclass per architecture, in
``model.py``), report; and ``attnapps.predict``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnapps.data import hub
from attnapps.config import (
    PROBABILITY_OR_AUTO, OnError, RunConfig, Schedule, TrainerConfig, at_least, choice, model_section, opt)

from .model import ARCHS


DataFormat = choice("DataFormat", ["tsv", "csv", "imdb"])
TokenizerKind = choice("TokenizerKind", ["auto", "word", "char", "sentencepiece"])
Normalization = choice("Normalization", ["auto", "nfkc", "nfc", "none"])
Embedded = choice("Embedded", ["en", "zh"])


@dataclass
class ClassificationData:
    path: str = opt("", "DIR in data.format's layout; \"\" = the embedded dataset data.embedded")
    embedded: Embedded = opt("en", "with data.path unset: en = Rotten Tomatoes snippets (fresh/rotten), zh = Chinese "
                             "user-interface strings by program (10 labels)")
    format: DataFormat = opt("tsv", "tsv (text<TAB>label) | csv (header) | imdb (aclImdb folders)")
    text_column: str = opt("text", "csv")
    label_column: str = opt("label", "csv")
    max_len: int = opt(0, "tokens kept per text (and the flatten width); 0 = from the data (tasks/classification/auto.py)",
                       check=at_least(0))
    on_error: OnError = opt("raise", "raise | skip")
    cache_dir: str = opt("", "prepared data (encoded splits, built once; attnapps/data/prepared.py) under "
                         "<cache_dir>/prepared; \"\" = $ATTNAPPS_CACHE or ~/.cache/attnapps")
    hf: str = opt("", hub.help_text("hf", example="imdb, ag_news"))
    hf_config: str = opt("", hub.help_text("hf_config", config="none for these; sst2 for glue"))
    hf_splits: str = opt("", hub.help_text("hf_splits"))
    hf_columns: str = opt("", hub.help_text("hf_columns", columns="text=text, label=label"))


@dataclass
class ClassificationTokenizer:
    kind: TokenizerKind = opt("auto", "auto (from the scripts of the training text: tasks/classification/auto.py) | "
                              "word (Unicode regex, lowercased; one token per Chinese/Japanese/Thai character) | "
                              "char (every character, lowercased) | sentencepiece")
    normalize: Normalization = opt("auto", "word, char: Unicode normalisation; auto = NFC with full-width letters "
                                  "and digits as ASCII, full-width punctuation kept (attnapps/data/scripts.py)")
    min_freq: int = opt(2, "word: rarer words -> <unk>", check=at_least(1))
    max_size: int = opt(30000, "word: vocabulary cap", check=at_least(0))
    vocab_size: int = opt(8000, "sentencepiece", check=at_least(8))


ClassificationModel = model_section("ClassificationModel", ARCHS, "auto",
                                    "auto (chosen from the data: tasks/classification/auto.py) | " + " | ".join(ARCHS))


@dataclass
class ClassificationTrainer(TrainerConfig):
    """The shared trainer's keys with classification's defaults: until the 3-minute budget (or early
    stopping), and three values chosen from the data unless set."""

    max_epochs: int = opt(0, "stop after this many passes over the training data (0 = until the time budget)",
                          check=at_least(0))
    max_minutes: float = opt(3.0, "wall-clock budget for training (0 = no limit); resumed runs count it all",
                             check=at_least(0))
    batch_size: int = opt(0, "examples per update; 0 = the architecture's (tasks/classification/auto.py)",
                          check=at_least(0))
    lr: float = opt(0.0, "peak learning rate (AdamW); 0 = the architecture's (tasks/classification/auto.py)",
                    check=at_least(0))
    schedule: Schedule = opt("linear", "constant | linear | cosine | inverse_sqrt (all after linear warmup)")
    patience: int = opt(3, "early stopping after N evaluations without improvement (0 = off)", check=at_least(0))
    ema: float = opt(-1.0, "> 0: evaluate and keep a moving average of the weights; < 0 = from the tokens: "
                     "0.999 for characters, else 0 (auto.py)", check=PROBABILITY_OR_AUTO)


@dataclass
class ClassificationReportConfig:
    examples: int = opt(8, "shaded test examples in the report (half correct, half wrong)", check=at_least(0))
    baseline: bool = opt(True, "TF-IDF + logistic regression on the same split (needs scikit-learn)")


@dataclass
class ClassificationConfig(RunConfig):
    task_name: str = "classification"
    data: ClassificationData = field(default_factory=ClassificationData)
    tokenizer: ClassificationTokenizer = field(default_factory=ClassificationTokenizer)
    model: ClassificationModel = field(default_factory=ClassificationModel)
    report: ClassificationReportConfig = field(default_factory=ClassificationReportConfig)
    trainer: ClassificationTrainer = field(default_factory=ClassificationTrainer)
    # lr 0 / batch_size 0 = the architecture's (its model class's defaults); max_epochs 0 = until the time budget
    # or early stopping (15 when there is no budget at all); ema < 0 = from the tokens (auto.py)


@dataclass
class ClassificationPredict:
    input: str = opt("-", "file with one text per line, or - for stdin")
    top: int = opt(5, "most-attended tokens to print", check=at_least(0))
