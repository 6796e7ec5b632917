"""``task=captioning``: CNN grid features -> Show, Attend and Tell (or a Transformer decoder), scored with
BLEU-1..4 and CIDEr-D, with attention-over-image figures and, on the synthetic scenes, an
attention-grounding score.

    python -m attnapps.run task=captioning [encoder=resnet50 encoder.weights=DEFAULT] [data.path=DIR]
    python -m attnapps.predict task=captioning run=RUN_DIR image=path.jpg [beam=5] [plot=attention.png]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnapps.config import (PROBABILITY, Attention, OnError, RunConfig, TrainerConfig, at_least, check_heads,
                             choice)
from attnapps.data import Vocab, pad_batch
from attnapps.data.files import cache_root, carve
from attnapps.data.vocab import BOS, EOS, PAD
from attnapps.decoding import beam_search, greedy, reorder_state
from attnapps.errors import ConfigError
from attnapps.metrics import cider_d, corpus_bleu_nltk
from attnapps.plots import attention_heatmap, attention_over_image
from attnapps.task import Task, register_task
from .data import load_karpathy
from .features import ENCODERS, build_encoder, cached_extract, load_pixels
from .model import ShowAttendTell, TransformerCaptioner
from .retrieval import ConsensusScorer, global_features, neighbours, retrieval_baseline
from .synthetic import ensure_synthetic


METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")


Encoder = choice("Encoder", list(ENCODERS))
Arch = choice("Arch", ["show_attend_tell", "transformer"])
Strategy = choice("Strategy", ["auto", "greedy", "beam", "rerank"])


@dataclass
class CaptioningData:
    path: str = ""  # DIR with dataset.json (Karpathy format) + images; "" = synthetic scenes in cache_dir
    image_dir: str = ""  # images folder under DIR when entries have no filepath (default: images/)
    cache_dir: str = ""  # synthetic data + feature cache; "" = $ATTNAPPS_CACHE or ~/.cache/attnapps
    synthetic_seed: int = 0  # the synthetic scenes' generator seed (independent of the run's seed)
    max_images: int = 0  # > 0: at most that many images per split (quick experiments)
    min_freq: int = 1  # words rarer than this in training captions -> <unk> (1 keeps every word; see README)
    max_len: int = 30  # caption tokens kept for training
    captions_per_image: int = 5  # training captions used per image and batch (all, up to this)
    on_error: OnError = "raise"  # raise | skip (skip and count bad entries and unreadable images)


@dataclass
class CaptioningEncoder:
    name: Encoder = "small_cnn"  # small_cnn | resnet18 | resnet50 | resnet101 | efficientnet_lite0
    weights: str = ""  # resnets: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...); "" = random init
    image_size: int = 0  # 0 = the encoder's default (64 small_cnn, 224 others)
    finetune: bool = False  # train a pretrained encoder end to end (small_cnn always trains)
    batch_size: int = 32  # feature extraction batch


@dataclass
class CaptioningModel:
    arch: Arch = "show_attend_tell"  # show_attend_tell | transformer
    attention: Attention = "additive"  # show_attend_tell: any core variant
    embed_size: int = 128  # show_attend_tell
    hidden_size: int = 256  # LSTM size / transformer d_model
    heads: int = 4
    layers: int = 2  # transformer
    ff_size: int = 512  # transformer
    dropout: float = 0.3
    doubly_stochastic: float = 0.0  # lambda of the doubly stochastic regulariser (the paper: 1; see README)
    init_from_mean: bool = False  # show_attend_tell: h0, c0 from the mean region (the paper) or zeros
    region_positions: bool = True  # show_attend_tell: add a learned embedding of each region's grid cell
    retrieval_k: int = 8  # show_attend_tell: attend over (and copy from) the captions of the k nearest training images; 0 = off
    memory_len: int = 160  # at most this many retrieved tokens per image
    label_smoothing: float = 0.1
    word_dropout: float = 0.1  # show_attend_tell: fraction of input words replaced by <unk> in training
    tie_embeddings: bool = True  # show_attend_tell: the output layer shares the word embedding
    scst_after: float = -1.0  # from this fraction of the budget on, optimise CIDEr-D (self-critical); >= 1 = never;
    # -1 = auto: 0.5 over a frozen encoder's features, never when the encoder trains (it needs the whole budget)
    scst_samples: int = 5  # captions sampled per image for the self-critical baseline


@dataclass
class CaptioningDecode:
    strategy: Strategy = "auto"  # auto (the best of the three on valid, after training) | greedy | beam | rerank
    beam: int = 5  # beam size (beam, rerank: the n-best re-ranked)
    rerank_k: int = 0  # rerank: neighbours whose captions judge the n-best (0 = the k-NN baseline's k)
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
        max_epochs=0, max_minutes=6.0, batch_size=32, lr=2e-3, warmup_steps=100, schedule="cosine",
        eval_every=0, clip_grad_norm=5.0, patience=10))


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
    predict_rules = {"beam": at_least(1), "alpha": at_least(0)}
    config_rules = {
        "data.synthetic_seed": at_least(0), "data.max_images": at_least(0), "data.min_freq": at_least(1),
        "data.max_len": at_least(1), "data.captions_per_image": at_least(1), "encoder.image_size": at_least(0),
        "encoder.batch_size": at_least(1), "model.embed_size": at_least(1), "model.hidden_size": at_least(2),
        "model.heads": at_least(1), "model.layers": at_least(1), "model.ff_size": at_least(1),
        "model.dropout": PROBABILITY, "model.doubly_stochastic": at_least(0), "model.retrieval_k": at_least(0),
        "model.memory_len": at_least(1), "model.label_smoothing": PROBABILITY, "model.word_dropout": PROBABILITY,
        "model.scst_after": lambda v: None if v == -1 or v >= 0 else "must be -1 (auto) or >= 0",
        "model.scst_samples": at_least(2), "decode.beam": at_least(1), "decode.rerank_k": at_least(0),
        "decode.alpha": at_least(0), "decode.max_len": at_least(1), "decode.valid_subset": at_least(0),
        "decode.samples": at_least(0), "decode.figures": at_least(0)}

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        m, e = cfg.model, cfg.encoder
        trains_encoder = e.name == "small_cnn" or e.finetune
        if m.arch == "transformer" and m.retrieval_k > 0 and not trains_encoder:
            raise ConfigError(f"model.retrieval_k={m.retrieval_k}: the retrieved memory is built for "
                              "model.arch=show_attend_tell; with the transformer set model.retrieval_k=0")
        check_heads(m, m.hidden_size, "model.hidden_size")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.vocab, self.feature_info, self.encoder, self.retrieval = None, {}, None, None
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
        if not self.restored:  # resume: the checkpoint's vocabulary
            self.vocab = Vocab.build((c for _, it in self.items["train"] for c in it.captions), min_freq=d.min_freq)
        encoded = {split: [[self.vocab.encode(c[: d.max_len]) for c in it.captions] for _, it in kept]
                   for split, kept in self.items.items()}
        self.build_retrieval(encoded["train"])
        return {split: [(row, caps, self.memory_for(split, i)) for i, ((row, _), caps) in enumerate(zip(kept, encoded[split]))]
                for split, kept in self.items.items()}

    # ------------------------------------------------------------------ retrieval
    def build_retrieval(self, train_captions: list[list[list[int]]]) -> None:
        """The nearest training images of every image by cosine of mean region features
        (:mod:`tasks.captioning.retrieval`), and the retrieval index a saved model keeps for prediction.
        A training image is never its own neighbour. Pixels (an encoder that trains) have no fixed
        features to retrieve with, so the memory is off (the report says so)."""
        k = self.cfg.model.retrieval_k
        self.neighbours, self.retrieval = {}, None
        if self.store.dim() != 3:  # pixels: the encoder trains
            return
        g = global_features(self.store)  # (rows, channels) unit vectors
        self.global_feats = g
        train_rows = torch.tensor([row for row, _ in self.items["train"]])
        keys = g[train_rows]  # (train, channels)
        self.retrieval = {"keys": keys.half(), "captions": train_captions}
        depth = max(k, 1)
        for split, kept in self.items.items():
            if not kept:
                self.neighbours[split] = torch.empty(0, depth, dtype=torch.long)
                continue
            rows = torch.tensor([row for row, _ in kept])
            exclude = torch.arange(len(kept)) if split == "train" else None
            self.neighbours[split] = neighbours(g[rows], keys, depth, exclude)  # (n, depth)

    def memory_of(self, neighbour_ids: list[int]) -> tuple[list[int], list[int]]:
        """``(token ids, rank per token)``: the captions of the given training images (nearest first),
        each closed by ``<eos>`` (copying it ends the caption), cut at ``model.memory_len`` tokens."""
        m = self.cfg.model
        ids, ranks = [], []
        for rank, j in enumerate(neighbour_ids[: m.retrieval_k], start=1):
            for cap in self.retrieval["captions"][j][: self.cfg.data.captions_per_image]:
                ids += cap + [EOS]
                ranks += [rank] * (len(cap) + 1)
        return ids[: m.memory_len], ranks[: m.memory_len]

    def memory_for(self, split: str, i: int):
        if self.cfg.model.retrieval_k <= 0 or self.retrieval is None or self.cfg.model.arch != "show_attend_tell":
            return None
        return self.memory_of(self.neighbours[split][i].tolist())

    @staticmethod
    def collate_memory(memories: list) -> dict:
        """``memory`` and ``memory_rank`` ``(batch, mem_len)`` padded with 0, or nothing without a memory."""
        if not memories or memories[0] is None:
            return {}
        memory, _ = pad_batch([m[0] for m in memories])
        rank, _ = pad_batch([m[1] for m in memories])
        return {"memory": memory, "memory_rank": rank}

    def collate(self, examples):
        n = self.cfg.data.captions_per_image
        images = self.store[torch.tensor([row for row, _, _ in examples])]  # (batch, ...) features or pixels
        caps, owner = [], []
        for i, (_, cs, _) in enumerate(examples):
            caps += cs[:n]
            owner += [i] * len(cs[:n])
        batch = dict(self.collate_captions(images, caps, owner), **self.collate_memory([m for _, _, m in examples]))
        batch["refs"] = [cs for _, cs, _ in examples]  # every caption (token ids) per image: the SCST rewards
        return batch

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
                                  regions if m.region_positions else 0, m.init_from_mean,
                                  memory=self.uses_memory, memory_ranks=max(m.retrieval_k, 0),
                                  tie_embeddings=m.tie_embeddings, word_dropout=m.word_dropout)
        if m.arch == "transformer":
            if m.retrieval_k > 0 and not self.trains_encoder:
                raise ConfigError(f"model.retrieval_k={m.retrieval_k}: the retrieved memory is built for "
                                  "model.arch=show_attend_tell; with the transformer set model.retrieval_k=0")
            return TransformerCaptioner(len(self.vocab), feature_dim, regions, self.encoder, self.trains_encoder,
                                        m.hidden_size, m.heads, m.layers, m.ff_size, m.dropout, PAD)
        raise ConfigError(f"model.arch={m.arch!r}: choose show_attend_tell or transformer")

    @property
    def uses_memory(self) -> bool:
        return (self.cfg.model.retrieval_k > 0 and self.cfg.model.arch == "show_attend_tell"
                and not self.trains_encoder)

    def regions(self) -> int:
        """Regions per image. Pixels: one encoder pass on a blank image, once (the mode is restored, so
        a call during training leaves a trained encoder's BatchNorm training)."""
        if self.store is not None and self.store.dim() == 3:
            return self.store.size(1)
        if getattr(self, "_regions", None) is None:
            was_training, size = self.encoder.training, self.encoder.image_size
            with torch.no_grad():
                self._regions = self.encoder.eval()(torch.zeros(1, 3, size, size, dtype=torch.uint8)).size(1)
            self.encoder.train(was_training)
        return self._regions

    def loss(self, model, batch):
        if self.scst_after < 1 and self.budget_fraction() >= self.scst_after:
            return self.scst_loss(model, batch)
        memory = {k: batch[k] for k in ("memory", "memory_rank") if k in batch}
        # logits or (with the memory) log-probabilities (n, len, V); attention (n, len, R [+ mem_len])
        logits, alphas = model(batch["images"], batch["cap_in"], batch["owner"], **memory)
        target = batch["cap_out"]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD, reduction="sum",
                              label_smoothing=self.cfg.model.label_smoothing)
        lam = self.cfg.model.doubly_stochastic
        if lam > 0 and self.cfg.model.arch == "show_attend_tell":
            if "memory" in batch:  # the regions' weights come first, then one per memory slot (at least one)
                alphas = alphas[..., : alphas.size(-1) - max(batch["memory"].size(1), 1)]
            # Xu et al. eq. 14: lambda * sum_i (1 - sum_t alpha_ti)^2, over the caption's real steps
            attention_sum = (alphas.float() * (target != PAD).unsqueeze(-1)).sum(1)  # (n, R)
            nll = nll + lam * ((1.0 - attention_sum) ** 2).sum()
        return nll, torch.tensor(target.size(0))  # per-caption sum, averaged over captions (as the paper)

    @property
    def scst_after(self) -> float:
        after = self.cfg.model.scst_after
        return after if after >= 0 else (1.0 if self.trains_encoder else 0.5)

    def scst_loss(self, model, batch):
        """Self-critical sequence training (Rennie et al. 2017) with the mean of the other samples as
        the baseline (Luo 2020): sample ``model.scst_samples`` captions per image, reward each with its
        CIDEr-D against the image's references (document frequencies from the training captions), and
        return ``-sum (reward - baseline) * log P(sample)`` over the samples (and their count)."""
        n = self.cfg.model.scst_samples
        memory = {k: batch[k] for k in ("memory", "memory_rank") if k in batch}
        state = model.encode(batch["images"], **memory)
        images = batch["images"].size(0)
        state = reorder_state(state, torch.arange(images, device=batch["images"].device).repeat_interleave(n))
        tokens = torch.full((images * n,), BOS, dtype=torch.long, device=batch["images"].device)
        alive = torch.ones_like(tokens, dtype=torch.bool)
        log_p = torch.zeros(images * n, device=tokens.device)
        steps = []
        for _ in range(self.cfg.decode.max_len):
            lp, state, _ = model.step(tokens, state)  # (images * n, vocab)
            tokens = torch.multinomial(lp.detach().float().exp(), 1).squeeze(1)  # (images * n,)
            log_p = log_p + lp.gather(1, tokens.unsqueeze(1)).squeeze(1) * alive  # up to and with EOS
            steps.append(tokens)
            alive = alive & (tokens != EOS)
            if not alive.any():
                break
        seqs = torch.stack(steps, 1).tolist()  # (images * n, steps)
        refs = batch["refs"]
        rewards = torch.tensor([self.id_scorer.mean_similarity(seq[: seq.index(EOS)] if EOS in seq else seq,
                                                                refs[i // n]) for i, seq in enumerate(seqs)])
        rewards = rewards.view(images, n)  # (images, n)
        baseline = (rewards.sum(1, keepdim=True) - rewards) / max(n - 1, 1)  # mean of the others
        advantage = (rewards - baseline).view(-1).to(log_p.device)  # (images * n,)
        return -(advantage * log_p).sum(), torch.tensor(images * n)

    @property
    def id_scorer(self) -> ConsensusScorer:
        """CIDEr-D between token-id captions, document frequencies from the training captions."""
        if getattr(self, "_id_scorer", None) is None:
            self._id_scorer = ConsensusScorer([caps for _, caps, _ in self.datasets["train"]])
        return self._id_scorer

    # ------------------------------------------------------------------ decoding and metrics
    def caption_images(self, model, images, beam: int = 1, alpha: float = 0.0, memory: dict | None = None,
                       n_best: int = 1):
        """Images (features or pixels, a batch) [+ their retrieved ``memory``/``memory_rank``] ->
        Hypotheses (tokens, scores, attention (len, R [+ mem_len]))."""
        model.eval()
        memory = {k: v.to(self.device) for k, v in (memory or {}).items()}
        state = model.encode(images.to(self.device), **memory)
        kw = dict(batch_size=images.size(0), bos=BOS, eos=EOS, max_len=self.cfg.decode.max_len, device=self.device)
        return greedy(model.step, state, **kw) if beam <= 1 else beam_search(model.step, state, beam=beam,
                                                                              alpha=alpha, n_best=n_best, **kw)

    def decode_split(self, model, split, limit: int = 0, beam: int = 1, alpha: float = 0.0,
                     rerank: list | None = None, keep_first: bool = False):
        """Token ids and attention per image of ``split``. ``rerank``: per image, the captions the beam's
        finished hypotheses are re-ranked against (consensus re-ranking); None keeps the beam's best.
        ``keep_first`` (with ``rerank``): also return the beam's own best, ``(hyps, attns, hyps0, attns0)``."""
        examples = self.datasets[split][: limit or None]
        hyps, attns, first, first_attns = [], [], [], []
        for start in range(0, len(examples), 64):
            chunk = examples[start:start + 64]
            rows = torch.tensor([row for row, _, _ in chunk])
            out = self.caption_images(model, self.store[rows], beam, alpha, self.collate_memory([m for _, _, m in chunk]),
                                      n_best=beam if rerank is not None else 1)
            first += out.tokens
            first_attns += out.attention
            if rerank is None or out.nbest is None:
                hyps += out.tokens
                attns += out.attention
                continue
            for i, cands in enumerate(out.nbest):
                refs = rerank[start + i]
                sims = [self.scorer.mean_similarity(self.vocab.decode(t), refs) for t, _, _ in cands]
                best = max(range(len(cands)), key=lambda j: (sims[j], -j))
                hyps.append(cands[best][0])
                attns.append(cands[best][2])
        return (hyps, attns, first, first_attns) if keep_first else (hyps, attns)

    # ------------------------------------------------------------------ decoding strategy
    STRATEGIES = ("greedy", "beam", "rerank")

    def decode_words(self, model, split: str, strategy: str, limit: int = 0):
        dec = self.cfg.decode
        if strategy == "greedy":
            return self.decode_split(model, split, limit)
        rerank = self.rerank_references(model, split) if strategy == "rerank" else None
        return self.decode_split(model, split, limit, max(dec.beam, 1), dec.alpha, rerank)

    def rerank_references(self, model, split: str) -> list:
        """Per image of ``split``: the captions of its ``decode.rerank_k`` nearest training images (0 = the
        k the k-NN baseline chose on valid) -- what ``strategy=rerank`` scores the beam's hypotheses against
        (mean CIDEr-D, the consensus of Devlin et al. 2015 applied to generated captions)."""
        base = self.retrieval_baseline(model)
        k = self.cfg.decode.rerank_k or base["k"]
        feats = base["feats"]
        train_rows = torch.tensor([row for row, _ in self.items["train"]], dtype=torch.long)
        rows = torch.tensor([row for row, _ in self.items[split]], dtype=torch.long)
        exclude = torch.arange(len(rows)) if split == "train" else None
        nb = neighbours(feats[rows], feats[train_rows], k, exclude)
        train_caps = [it.captions for _, it in self.items["train"]]
        return [[c for j in row for c in train_caps[j]] for row in nb.tolist()]

    def choose_strategy(self, model) -> str:
        """``decode.strategy``, or with ``auto`` the one of greedy / beam / rerank whose valid CIDEr-D is
        highest (decided once, after training; the scores go to the report)."""
        dec = self.cfg.decode
        if dec.strategy != "auto":
            if dec.strategy not in self.STRATEGIES:
                raise ConfigError(f"decode.strategy={dec.strategy!r}: choose auto, greedy, beam or rerank")
            return dec.strategy
        if getattr(self, "strategy", None) is None:
            self.strategy_scores, self.strategy_outputs = {}, {}
            if not self.datasets.get("valid"):
                self.strategy = "beam"
                return self.strategy
            refs = [it.captions for _, it in self.items["valid"]]
            self.strategy_outputs["greedy"] = self.decode_split(model, "valid")
            nbest = self.decode_split(model, "valid", 0, max(dec.beam, 1), dec.alpha, self.rerank_references(model, "valid"),
                                      keep_first=True)  # one beam search gives both
            self.strategy_outputs["rerank"], self.strategy_outputs["beam"] = nbest[:2], nbest[2:]
            for name in self.STRATEGIES:
                hyps = self.strategy_outputs[name][0]
                self.strategy_scores[name] = cider_d([self.vocab.decode(h) for h in hyps], refs)[0]
            self.strategy = max(self.STRATEGIES, key=lambda n: self.strategy_scores[n])  # ties: the simpler
        return self.strategy

    def evaluate(self, model, split, final=False):
        dec = self.cfg.decode
        if not final:
            hyps, attns = self.decode_split(model, split, dec.valid_subset)  # greedy, on a subset
        else:
            strategy = self.choose_strategy(model)
            done = getattr(self, "strategy_outputs", {})
            hyps, attns = done[strategy] if split == "valid" and strategy in done else \
                self.decode_words(model, split, strategy)
        r = self.regions()  # attention rows: regions, then (with the memory) retrieved tokens
        mem_attns = [a[:, r:] if a is not None and a.size(1) > r else None for a in attns]
        attns = [a[:, :r] if a is not None else None for a in attns]
        words = [self.vocab.decode(h) for h in hyps]
        refs = [it.captions for _, it in self.items[split][: len(words)]]
        out = corpus_bleu_nltk(words, refs)
        out["cider"] = cider_d(words, refs)[0]
        g = self.grounding(split, words, attns)
        if g is not None:
            out["grounding"], out["grounding_chance"] = g["accuracy"], g["chance"]
        if final:
            self.last_outputs = getattr(self, "last_outputs", {})
            self.last_outputs[split] = (words, attns, out, g, mem_attns)
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
        words, attns, scores, g, mem_attns = self.last_outputs["test"]
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
                 f"- decoder: {self.cfg.model.arch}, attention {self.cfg.model.attention}; test decoding: {self.describe_strategy()}",
                 "- training loss: cross-entropy (label smoothing "
                 f"{self.cfg.model.label_smoothing})" + (f", then self-critical CIDEr-D ({self.cfg.model.scst_samples} samples "
                 f"per image) from {self.scst_after:.0%} of the budget" if self.scst_after < 1 else
                 " only" + (" (model.scst_after=-1: no self-critical phase when the encoder trains)"
                            if self.cfg.model.scst_after < 0 else "")),
                 "- retrieved memory: " + (f"the captions of the {self.cfg.model.retrieval_k} nearest training images "
                                            f"(at most {self.cfg.model.memory_len} tokens), attended and copied from"
                                            if self.uses_memory else "off (" + ("the encoder trains, so there are no fixed "
                                            "features to retrieve with" if self.trains_encoder and self.cfg.model.retrieval_k > 0
                                            else "model.retrieval_k=0") + ")"), "",
                 "### Test set: this model against nearest-neighbour retrieval", "",
                 "| captioner | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |", "|---|---|---|---|---|---|",
                 f"| {self.cfg.model.arch}{' + retrieved memory' if self.uses_memory else ''} | "
                 + " | ".join(f"{scores[k]:.4f}" for k in METRICS) + " |"]
        base = self.retrieval_baseline(model)
        lines += [f"| k-NN consensus (k={base['k']}, chosen on valid) | " + " | ".join(f"{base['test'][k]:.4f}" for k in METRICS) + " |",
                  "| 1-NN (caption of the closest training image) | " + " | ".join(f"{base['nn1']['test'][k]:.4f}" for k in METRICS) + " |",
                  "", f"Retrieval uses the {base['features']} (mean over regions, cosine similarity); the k-NN consensus "
                  "caption is the one among the k nearest images' captions with the highest mean CIDEr-D to the "
                  "others (Devlin et al. 2015). Valid CIDEr-D by k: "
                  + ", ".join(f"{k}: {v:.3f}" for k, v in base["valid_by_k"].items()) + ". `baseline.json` has the numbers.",
                  "", "BLEU: nltk `corpus_bleu` over all references, uniform weights, no smoothing (as the COCO "
                  "evaluation); CIDEr-D as the COCO caption evaluation (sigma 6, clipping, x10), on lower-cased "
                  "words without punctuation."]
        (run_dir / "baseline.json").write_text(json.dumps(
            {"method": "knn_consensus", "k": base["k"], **{f"test.{k}": v for k, v in base["test"].items()},
             **{f"valid.{k}": v for k, v in base.get("valid", {}).items()},
             **{f"nn1.test.{k}": v for k, v in base["nn1"]["test"].items()},
             "valid_cider_by_k": {str(k): v for k, v in base["valid_by_k"].items()}}, indent=2))
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
            if mem_attns[n] is not None:
                lines += ["", self.memory_figure(n, w, mem_attns[n], run_dir), ""]
        return ["\n".join(lines)]

    def memory_figure(self, n: int, words, beta, run_dir: Path) -> str:
        """The attention over the retrieved captions while writing test caption ``n``: a heatmap (one
        row per generated word) and, per word, the memory token it attended to most."""
        ids = self.datasets["test"][n][2][0]
        tokens = [self.vocab.itos[i] if i != EOS else "|" for i in ids]
        path = attention_heatmap(beta[: len(words), : len(tokens)].float().cpu().numpy(), tokens, words,
                                 run_dir / "plots" / f"memory_{n}.png", title="attention over the retrieved captions",
                                 x_name="retrieved captions (| ends one)", y_name="generated")
        peaks = [f"{w} <- {tokens[int(beta[j, : len(tokens)].argmax())]} ({float(beta[j, : len(tokens)].max()):.2f})"
                 for j, w in enumerate(words) if j < beta.size(0)]
        return (f"Retrieved memory of test image {n}: " + "; ".join(peaks) + f"\n\n![memory {n}](plots/{path.name})")

    def retrieval_baseline(self, model) -> dict:
        """1-NN and k-NN consensus captions (:mod:`tasks.captioning.retrieval`) on the features the model
        reads: the cached features of a frozen encoder, or the trained encoder's output over the pixels.
        Computed once, after training (with the best weights)."""
        if getattr(self, "baseline", None) is not None:
            return self.baseline
        if self.store.dim() == 3:
            feats, what = self.global_feats, "cached encoder features"
        else:
            chunks = []
            model.eval()
            with torch.no_grad():
                for s in range(0, self.store.size(0), 256):
                    chunks.append(global_features(model.images(self.store[s:s + 256].to(self.device)).cpu()))
            feats, what = torch.cat(chunks), "trained encoder's features"
        parts = []
        for split in ("train", "valid", "test"):
            rows = torch.tensor([row for row, _ in self.items[split]], dtype=torch.long)
            parts.append((feats[rows], [it.captions for _, it in self.items[split]]))
        out = retrieval_baseline(*parts)
        out["features"], out["feats"] = what, feats
        self.baseline = out
        return out

    @property
    def scorer(self) -> ConsensusScorer:
        if getattr(self, "_scorer", None) is None:
            self._scorer = ConsensusScorer([it.captions for _, it in self.items["train"]])
        return self._scorer

    def describe_strategy(self) -> str:
        dec = self.cfg.decode
        name = getattr(self, "strategy", None) or dec.strategy
        what = {"greedy": "greedy", "beam": f"beam (beam search, beam {dec.beam}, length penalty {dec.alpha})",
                "rerank": f"rerank (the beam's {dec.beam} best re-ranked by consensus with the captions of the "
                          f"{dec.rerank_k or (getattr(self, 'baseline', None) or {}).get('k', '?')} nearest training images)"}[name]
        scores = getattr(self, "strategy_scores", {})
        if dec.strategy == "auto" and scores:
            what += " -- chosen on valid by CIDEr-D: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        return what

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
            out = self.caption_images(model, pixels, options.beam, options.alpha, self.predict_memory(model, pixels))
            words = self.vocab.decode(out.tokens[0])
            print(" ".join(words) if len(paths) == 1 else f"{p}\t{' '.join(words)}")
            if options.plot and out.attention[0] is not None and words:
                plot = Path(options.plot)
                if len(paths) > 1:
                    plot = plot.with_name(f"{plot.stem}_{n}{plot.suffix or '.png'}")
                self.figure(p, words, out.attention[0], plot)

    def predict_memory(self, model, pixels) -> dict:
        """The retrieved memory of a new image: its nearest training images by the saved index."""
        if not self.uses_memory or self.retrieval is None:
            return {}
        model.eval()
        with torch.no_grad():
            query = global_features(model.images(pixels.to(self.device)).cpu())  # (1, channels)
        nb = neighbours(query, self.retrieval["keys"].float(), self.cfg.model.retrieval_k)[0].tolist()
        return self.collate_memory([self.memory_of(nb)])

    def state_dict(self):
        state = {"vocab": self.vocab.state_dict()}
        if self.retrieval is not None:  # prediction retrieves from the training images as in training
            state["retrieval"] = {"keys": self.retrieval["keys"], "captions": self.retrieval["captions"]}
        return state

    def load_state_dict(self, state):
        self.vocab = Vocab.from_state(state["vocab"])
        self.retrieval = state.get("retrieval")
