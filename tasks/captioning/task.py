"""``task=captioning``: CNN grid features -> Show, Attend and Tell (or a Transformer decoder), scored with
BLEU-1..4 and CIDEr-D, with attention-over-image figures and, on the synthetic scenes, an
attention-grounding score.

    python -m attnapps.run task=captioning [encoder=resnet50 encoder.weights=DEFAULT] [data.path=DIR]
    python -m attnapps.predict task=captioning run=RUN_DIR image=path.jpg [beam=5] [plot=attention.png]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnapps.config import RunConfig, TrainerConfig
from attnapps.data import Vocab, pad_batch
from attnapps.data.files import cache_root, carve
from attnapps.data.vocab import BOS, EOS, PAD
from attnapps.decoding import beam_search, greedy
from attnapps.errors import ConfigError
from attnapps.metrics import cider_d, corpus_bleu_nltk
from attnapps.plots import attention_over_image
from attnapps.task import Task, register_task
from tasks.captioning.data import load_karpathy
from tasks.captioning.features import build_encoder, cached_extract, load_pixels
from tasks.captioning.model import ShowAttendTell, TransformerCaptioner
from tasks.captioning.synthetic import ensure_synthetic


@dataclass
class CaptioningData:
    path: str = ""  # DIR with dataset.json (Karpathy format) + images; "" = synthetic scenes in cache_dir
    image_dir: str = ""  # images folder under DIR when entries have no filepath (default: images/)
    cache_dir: str = ""  # synthetic data + feature cache; "" = $ATTNAPPS_CACHE or ~/.cache/attnapps
    synthetic_seed: int = 0  # the synthetic scenes' generator seed (independent of the run's seed)
    max_images: int = 0  # > 0: at most that many images per split (quick experiments)
    min_freq: int = 3  # words rarer than this in training captions -> <unk> (5 is usual for Flickr/COCO)
    max_len: int = 30  # caption tokens kept for training
    captions_per_image: int = 5  # training captions used per image and batch (all, up to this)
    on_error: str = "raise"  # raise | skip (skip and count bad entries and unreadable images)


@dataclass
class CaptioningEncoder:
    name: str = "small_cnn"  # small_cnn | resnet18 | resnet50 | resnet101 | efficientnet_lite0
    weights: str = ""  # resnets: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...); "" = random init
    image_size: int = 0  # 0 = the encoder's default (64 small_cnn, 224 others)
    finetune: bool = False  # train a pretrained encoder end to end (small_cnn always trains)
    batch_size: int = 32  # feature extraction batch


@dataclass
class CaptioningModel:
    arch: str = "show_attend_tell"  # show_attend_tell | transformer
    attention: str = "additive"  # show_attend_tell: any core variant
    embed_size: int = 128  # show_attend_tell
    hidden_size: int = 256  # LSTM size / transformer d_model
    heads: int = 4
    layers: int = 2  # transformer
    ff_size: int = 512  # transformer
    dropout: float = 0.3
    doubly_stochastic: float = 0.0  # lambda of the doubly stochastic regulariser (the paper: 1; see README)
    init_from_mean: bool = False  # show_attend_tell: h0, c0 from the mean region (the paper) or zeros
    region_positions: bool = True  # show_attend_tell: add a learned embedding of each region's grid cell


@dataclass
class CaptioningDecode:
    beam: int = 3
    alpha: float = 0.0  # GNMT length penalty
    max_len: int = 30
    valid_subset: int = 250  # images scored (greedy) at each evaluation during training
    samples: int = 8  # captions listed in the report
    figures: int = 4  # attention-over-image figures in the report


@dataclass
class CaptioningConfig(RunConfig):
    task_name: str = "captioning"
    data: CaptioningData = field(default_factory=CaptioningData)
    encoder: CaptioningEncoder = field(default_factory=CaptioningEncoder)
    model: CaptioningModel = field(default_factory=CaptioningModel)
    decode: CaptioningDecode = field(default_factory=CaptioningDecode)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=30, max_minutes=6.0, batch_size=32, lr=2e-3, warmup_steps=100, schedule="cosine",
        eval_every=0, clip_grad_norm=5.0, patience=4))


@dataclass
class CaptioningPredict:
    image: str = ""  # an image file (or several, comma-separated)
    beam: int = 5
    alpha: float = 0.0
    plot: str = ""  # save the attention figure here (several images: plot_<n>.png next to it)


@register_task("captioning")
class CaptioningTask(Task):
    config_class = CaptioningConfig
    predict_config_class = CaptioningPredict
    primary_metric = "cider"
    higher_is_better = True
    count_unit = "captions"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.vocab, self.feature_info, self.encoder = None, {}, None
        self.store = None  # (images, regions, channels) fp16 features or (images, 3, S, S) uint8 pixels

    # ------------------------------------------------------------------ data
    @property
    def trains_encoder(self) -> bool:
        return self.cfg.encoder.name == "small_cnn" or self.cfg.encoder.finetune

    def build_encoder(self):
        e = self.cfg.encoder
        return build_encoder(e.name, e.weights, e.image_size)

    def build_data(self):
        d, e = self.cfg.data, self.cfg.encoder
        cache = cache_root(d.cache_dir)
        root = Path(d.path) if d.path else ensure_synthetic(cache, d.synthetic_seed)
        splits, self.policy = load_karpathy(root, d.on_error, d.image_dir, d.max_images)
        if not splits["valid"]:
            splits["train"], splits["valid"] = carve(splits["train"], 0.05, self.cfg.seed)
        self.root = root
        self.encoder = self.build_encoder()
        items = splits["train"] + splits["valid"] + splits["test"]
        blob, hit, file = cached_extract(
            cache, [it.path for it in items], None if self.trains_encoder else self.encoder, e.name, e.weights,
            self.encoder.image_size, self.policy, batch_size=e.batch_size, progress=self.cfg.trainer.progress)
        self.store = blob["data"]
        self.feature_info = {"cache_hit": hit, "file": str(file), "images_per_sec": blob["images_per_sec"],
                             "seconds": blob["seconds"], "kind": "pixels" if self.trains_encoder else "features"}
        rows, k = blob["rows"], 0
        self.items = {}
        for split in ("train", "valid", "test"):
            kept = []
            for it in splits[split]:
                if k in rows:
                    kept.append((rows[k], it))
                k += 1
            self.items[split] = kept
        self.vocab = Vocab.build((c for _, it in self.items["train"] for c in it.captions), min_freq=d.min_freq)
        return {split: [(row, [self.vocab.encode(c[: d.max_len]) for c in it.captions]) for row, it in kept]
                for split, kept in self.items.items()}

    def collate(self, examples):
        n = self.cfg.data.captions_per_image
        images = self.store[torch.tensor([row for row, _ in examples])]  # (batch, ...) features or pixels
        caps, owner = [], []
        for i, (_, cs) in enumerate(examples):
            caps += cs[:n]
            owner += [i] * len(cs[:n])
        return self.collate_captions(images, caps, owner)

    @staticmethod
    def collate_captions(images, captions: list[list[int]], owner: list[int]) -> dict:
        """A batch: images, ``cap_in`` = BOS + caption and ``cap_out`` = caption + EOS ``(n_caps, len + 1)``
        padded, and ``owner (n_caps,)``: the image row of each caption."""
        cap_in, _ = pad_batch([[BOS] + c for c in captions])
        cap_out, _ = pad_batch([c + [EOS] for c in captions])
        return {"images": images, "cap_in": cap_in, "cap_out": cap_out, "owner": torch.tensor(owner)}

    # ------------------------------------------------------------------ model
    def build_model(self):
        m = self.cfg.model
        if getattr(self, "encoder", None) is None:  # rebuilding a saved run: the checkpoint holds the weights
            e = self.cfg.encoder
            self.encoder = build_encoder(e.name, "", e.image_size)
        feature_dim = self.encoder.out_channels
        regions = self.regions()
        if m.arch == "show_attend_tell":
            return ShowAttendTell(len(self.vocab), feature_dim, self.encoder, self.trains_encoder, m.embed_size,
                                  m.hidden_size, m.attention, m.dropout, m.heads, PAD,
                                  regions if m.region_positions else 0, m.init_from_mean)
        if m.arch == "transformer":
            return TransformerCaptioner(len(self.vocab), feature_dim, regions, self.encoder, self.trains_encoder,
                                        m.hidden_size, m.heads, m.layers, m.ff_size, m.dropout, PAD)
        raise ConfigError(f"model.arch={m.arch!r}: choose show_attend_tell or transformer")

    def regions(self) -> int:
        if self.store is not None and self.store.dim() == 3:
            return self.store.size(1)
        with torch.no_grad():
            size = self.encoder.image_size
            return self.encoder.eval()(torch.zeros(1, 3, size, size, dtype=torch.uint8)).size(1)

    def loss(self, model, batch):
        logits, alphas = model(batch["images"], batch["cap_in"], batch["owner"])  # (n, len, V), (n, len, R)
        target = batch["cap_out"]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD, reduction="sum")
        lam = self.cfg.model.doubly_stochastic
        if lam > 0 and self.cfg.model.arch == "show_attend_tell":
            # Xu et al. eq. 14: lambda * sum_i (1 - sum_t alpha_ti)^2, over the caption's real steps
            attention_sum = (alphas.float() * (target != PAD).unsqueeze(-1)).sum(1)  # (n, R)
            nll = nll + lam * ((1.0 - attention_sum) ** 2).sum()
        return nll, torch.tensor(target.size(0))  # per-caption sum, averaged over captions (as the paper)

    # ------------------------------------------------------------------ decoding and metrics
    def caption_images(self, model, images, beam: int = 1, alpha: float = 0.0):
        """Images (features or pixels, a batch) -> Hypotheses (tokens, scores, attention (len, R))."""
        model.eval()
        state = model.encode(images.to(self.device))
        kw = dict(batch_size=images.size(0), bos=BOS, eos=EOS, max_len=self.cfg.decode.max_len, device=self.device)
        return greedy(model.step, state, **kw) if beam <= 1 else beam_search(model.step, state, beam=beam,
                                                                              alpha=alpha, **kw)

    def decode_split(self, model, split, limit: int = 0, beam: int = 1, alpha: float = 0.0):
        examples = self.datasets[split][: limit or None]
        hyps, attns = [], []
        for start in range(0, len(examples), 64):
            rows = torch.tensor([row for row, _ in examples[start:start + 64]])
            out = self.caption_images(model, self.store[rows], beam, alpha)
            hyps += out.tokens
            attns += out.attention
        return hyps, attns

    def evaluate(self, model, split, final=False):
        dec = self.cfg.decode
        hyps, attns = self.decode_split(model, split, 0 if final else dec.valid_subset,
                                        dec.beam if final else 1, dec.alpha)
        words = [self.vocab.decode(h) for h in hyps]
        refs = [it.captions for _, it in self.items[split][: len(words)]]
        out = corpus_bleu_nltk(words, refs)
        out["cider"] = cider_d(words, refs)[0]
        g = self.grounding(split, words, attns)
        if g is not None:
            out["grounding"], out["grounding_chance"] = g["accuracy"], g["chance"]
        if final:
            self.last_outputs = getattr(self, "last_outputs", {})
            self.last_outputs[split] = (words, attns, out, g)
        return out

    def grounding(self, split, words, attns):
        """Pointing game on data with object boxes: for each generated object word (a shape noun, with
        its colour adjective when there is one), does the attention peak's grid cell overlap that
        object? Also the chance level: the fraction of cells overlapping it."""
        items = [it for _, it in self.items[split][: len(words)]]
        if not any(it.objects for it in items):
            return None
        nouns = {o["shape"] for it in items for o in it.objects}
        adjectives = {o["colour"] for it in items for o in it.objects}
        hits = total = hallucinated = 0
        chance = 0.0
        for it, ws, att in zip(items, words, attns):
            if att is None or not it.objects:
                continue
            k = int(round(math.sqrt(att.size(-1))))
            cw, ch = (it.width or 1) / k, (it.height or 1) / k
            for j, w in enumerate(ws):
                if w not in nouns or j >= att.size(0):
                    continue
                cands = [o for o in it.objects if o["shape"] == w]
                if j > 0 and ws[j - 1] in adjectives:
                    cands = [o for o in cands if o["colour"] == ws[j - 1]]
                if not cands:
                    hallucinated += 1
                    continue

                def overlaps(r, c):
                    x0, y0, x1, y1 = c * cw, r * ch, (c + 1) * cw, (r + 1) * ch
                    return any(b[0] < x1 and x0 < b[2] and b[1] < y1 and y0 < b[3]
                               for b in (o["bbox"] for o in cands))

                peak = int(att[j].argmax())
                hits += overlaps(peak // k, peak % k)
                chance += sum(overlaps(r, c) for r in range(k) for c in range(k)) / (k * k)
                total += 1
        return {"accuracy": hits / max(total, 1), "chance": chance / max(total, 1), "words": total,
                "hallucinated": hallucinated}

    def extra_metrics(self, model):
        info = self.feature_info
        return {"features.images_per_sec": info.get("images_per_sec", 0.0),
                "features.seconds": info.get("seconds", 0.0), "features.cache_hit": int(info.get("cache_hit", False))}

    # ------------------------------------------------------------------ report and predict
    def report(self, model, run_dir):
        run_dir = Path(run_dir)
        dec, info = self.cfg.decode, self.feature_info
        if "test" not in getattr(self, "last_outputs", {}):
            self.evaluate(model, "test", final=True)
        words, attns, scores, g = self.last_outputs["test"]
        (run_dir / "test_captions.txt").write_text(
            "".join(f"{it.name}\t{' '.join(w)}\n" for (_, it), w in zip(self.items["test"], words)), encoding="utf-8")
        lines = ["## Captioning", "",
                 f"- data: {self.cfg.data.path or 'synthetic shapes (generated)'} at `{self.root}`; images "
                 f"train {len(self.datasets['train'])}, valid {len(self.datasets['valid'])}, test {len(self.datasets['test'])}; "
                 f"vocabulary {len(self.vocab)} (min_freq {self.cfg.data.min_freq})",
                 f"- bad entries / unreadable images skipped: {self.policy.skipped}",
                 f"- encoder: {self.describe_encoder()}, {self.encoder.image_size} px, "
                 f"{self.regions()} regions of {self.encoder.out_channels} channels",
                 f"- {info['kind']} cache {'hit' if info['cache_hit'] else 'miss (built now)'}: `{info['file']}`; "
                 f"extraction {info['images_per_sec']:.1f} images/s",
                 f"- decoder: {self.cfg.model.arch}, attention {self.cfg.model.attention}; test decoding beam {dec.beam}, "
                 f"length penalty {dec.alpha}", "",
                 "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |", "|---|---|---|---|---|",
                 "| " + " | ".join(f"{scores[k]:.4f}" for k in ("bleu1", "bleu2", "bleu3", "bleu4", "cider")) + " |", "",
                 "BLEU: nltk `corpus_bleu` over all references, uniform weights, no smoothing (as the COCO "
                 "evaluation); CIDEr-D as the COCO caption evaluation (sigma 6, clipping, x10), on lower-cased "
                 "words without punctuation."]
        if g is not None:
            lines += ["", f"**Attention grounding** (pointing game over {g['words']} generated object words): the "
                          f"attention peak falls on the named object {g['accuracy']:.1%} of the time; chance "
                          f"(a uniformly random cell) {g['chance']:.1%}. Object words naming no object in the image: "
                          f"{g['hallucinated']}."]
        lines += ["", "Test captions: `test_captions.txt`.", "", "### Samples (test)", "",
                  "| image | generated | references (first two) |", "|---|---|---|"]
        for (_, it), w in list(zip(self.items["test"], words))[: dec.samples]:
            lines.append(f"| {it.name} | {' '.join(w)} | {' / '.join(' '.join(c) for c in it.captions[:2])} |")
        lines += ["", "### Where the decoder looked (test images, test decoding)", ""]
        for n, ((_, it), w, a) in enumerate(list(zip(self.items["test"], words, attns))[: dec.figures]):
            if a is None or not w:
                continue
            path = self.figure(it.path, w, a, run_dir / "plots" / f"attention_{n}.png")
            lines.append(f"![attention {n}](plots/{path.name})")
        return ["\n".join(lines)]

    def describe_encoder(self) -> str:
        e = self.cfg.encoder
        if e.name == "small_cnn":
            return "small_cnn (trained from scratch with the decoder)"
        weights = "ImageNet weights from the package" if e.name == "efficientnet_lite0" else (
            f"weights {e.weights}" if e.weights else "random initialisation")
        return f"{e.name} ({weights}, {'fine-tuned end to end' if e.finetune else 'frozen'})"

    def figure(self, image_path, words, attn, out):
        from PIL import Image

        k = int(round(math.sqrt(attn.size(-1))))
        with Image.open(image_path) as im:
            image = im.convert("RGB")
            image.thumbnail((256, 256))
            pixels = np.asarray(image)
        maps = attn[: len(words)].float().cpu().view(-1, k, k)
        return attention_over_image(pixels, words, maps, out, title=" ".join(words))

    def predict(self, model, options):
        if not options.image:
            raise ConfigError("image=: give an image file (or several, comma-separated)")
        paths = [Path(p) for p in options.image.split(",") if p]
        size = model.images.encoder.image_size
        for n, p in enumerate(paths):
            try:
                pixels = load_pixels(p, size).unsqueeze(0)  # (1, 3, S, S)
            except FileNotFoundError:
                raise ConfigError(f"image={p}: no such file") from None
            except Exception as e:
                raise ConfigError(f"image={p}: cannot read image ({type(e).__name__})") from None
            out = self.caption_images(model, pixels, options.beam, options.alpha)
            words = self.vocab.decode(out.tokens[0])
            print(" ".join(words) if len(paths) == 1 else f"{p}\t{' '.join(words)}")
            if options.plot and out.attention[0] is not None and words:
                plot = Path(options.plot)
                if len(paths) > 1:
                    plot = plot.with_name(f"{plot.stem}_{n}{plot.suffix or '.png'}")
                self.figure(p, words, out.attention[0], plot)

    def state_dict(self):
        return {"vocab": self.vocab.state_dict()}

    def load_state_dict(self, state):
        self.vocab = Vocab.from_state(state["vocab"])
