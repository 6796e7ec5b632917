"""``task=captioning``'s configuration: data, image encoder, model (one dataclass per architecture, in
``model.py``), decoding; and ``attnapps.predict``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnapps.data import hub
from attnapps.config import OnError, RunConfig, TrainerConfig, at_least, choice, model_section, opt

from attnapps.decoding import BeamOptions

from .features import ENCODERS
from .model import ARCHS


Encoder = choice("Encoder", list(ENCODERS))
DecodeStrategy = choice("DecodeStrategy", ["auto", "greedy", "beam", "rerank", "knn"])  # decode.strategy's type


@dataclass
class CaptioningData:
    path: str = opt("", "DIR with dataset.json (Karpathy format) + images; \"\" = synthetic scenes in cache_dir")
    image_dir: str = opt("", "images folder under DIR when entries have no filepath (default: images/)")
    cache_dir: str = opt("", "synthetic data + feature cache; \"\" = $ATTNAPPS_CACHE or ~/.cache/attnapps")
    synthetic_seed: int = opt(0, "the synthetic scenes' generator seed (independent of the run's seed)",
                              check=at_least(0))
    max_images: int = opt(0, "> 0: at most that many images per split (quick experiments)", check=at_least(0))
    min_freq: int = opt(1, "words rarer than this in training captions -> <unk> (1 keeps every word; see README)",
                        check=at_least(1))
    max_len: int = opt(30, "caption tokens kept for training", check=at_least(1))
    captions_per_image: int = opt(5, "training captions used per image and batch (all, up to this)", check=at_least(1))
    on_error: OnError = opt("raise", "raise | skip (skip and count bad entries and unreadable images)")
    hf: str = opt("", hub.help_text("hf", example="a COCO or Flickr captions set"))
    hf_config: str = opt("", hub.help_text("hf_config", config="as the set names them"))
    hf_splits: str = opt("", hub.help_text("hf_splits"))
    hf_columns: str = opt("", hub.help_text("hf_columns", columns="image=image, captions=the first of captions, caption, sentences, text; one caption or a list of them per row, or several columns: captions=caption_0+caption_1"))


@dataclass
class CaptioningEncoder:
    name: Encoder = opt("small_cnn", "small_cnn | resnet18 | resnet50 | resnet101 | efficientnet_lite0")
    weights: str = opt("", "resnets: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...); \"\" = random init")
    image_size: int = opt(0, "0 = the encoder's default (64 small_cnn, 224 others)", check=at_least(0))
    finetune: bool = opt(False, "train a pretrained encoder end to end (small_cnn always trains)")
    batch_size: int = opt(32, "feature extraction batch", check=at_least(1))


CaptioningModel = model_section("CaptioningModel", ARCHS, "show_attend_tell",
                                "show_attend_tell (LSTM decoder, Xu et al. 2015) | transformer")


@dataclass
class CaptioningBeam(BeamOptions):
    alpha: float = opt(0.0, "GNMT length penalty (0 = none)", check=at_least(0))  # captions: none (README)


@dataclass
class CaptioningDecode(CaptioningBeam):  # beam (beam, rerank: the n-best re-ranked), alpha
    strategy: DecodeStrategy = opt("auto", "auto (the best on valid, after training) | greedy | beam | rerank | "
                                   "knn (the k-NN consensus caption, no decoding; needs the retrieved memory)")
    rerank_k: int = opt(0, "rerank: neighbours whose captions judge the n-best (0 = the k-NN baseline's k)",
                        check=at_least(0))
    max_len: int = opt(30, "longest caption decoded (tokens)", check=at_least(1))
    valid_subset: int = opt(250, "images scored (greedy) at each evaluation during training", check=at_least(0))


@dataclass
class CaptioningReport:
    examples: int = opt(8, "captions listed in report.md (was decode.samples)", check=at_least(0))
    figures: int = opt(4, "attention-over-image figures in report.md (was decode.figures)", check=at_least(0))


@dataclass
class CaptioningConfig(RunConfig):
    task_name: str = "captioning"
    data: CaptioningData = field(default_factory=CaptioningData)
    encoder: CaptioningEncoder = field(default_factory=CaptioningEncoder)
    model: CaptioningModel = field(default_factory=CaptioningModel)
    decode: CaptioningDecode = field(default_factory=CaptioningDecode)
    report: CaptioningReport = field(default_factory=CaptioningReport)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=0, max_minutes=6.0, batch_size=32, lr=2e-3, warmup_steps=100, schedule="cosine",
        eval_every=0, clip_grad_norm=5.0, patience=10))


@dataclass
class CaptioningPredict(CaptioningBeam):  # beam, alpha: by default the run's decode.beam, decode.alpha
    image: str = opt("", "an image file (or several, comma-separated)")
    plot: str = opt("", "save the attention figure here (several images: plot_<n>.png next to it)")
