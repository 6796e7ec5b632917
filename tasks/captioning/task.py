"""``task=captioning``: CNN grid features -> Show, Attend and Tell (or a Transformer decoder), scored with
BLEU-1..4 and CIDEr-D, with attention-over-image figures and, on the synthetic scenes, an
attention-grounding score.

    python -m attnapps.run task=captioning [encoder=resnet50 encoder.weights=DEFAULT] [data.path=DIR]
    python -m attnapps.predict task=captioning run=RUN_DIR image=path.jpg [beam=5] [plot=attention.png]
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from PIL import Image

from attnapps.export.graphs import ExampleInputs, random_ids
from attnapps.config import arch_config, arch_keys, check_heads
from attnapps.data import Vocab, hub, pad_batch
from attnapps.data.prepared import View
from attnapps.data.scripts import join_words
from attnapps.data.files import ErrorPolicy, cache_root, carve
from attnapps.data.vocab import BOS, EOS, PAD
from attnapps.decoding import decode_batches, step_attention
from attnapps.errors import ConfigError, DataError
from attnapps.explorer import encoder_decoder_route, example, forced_views, image_uri, view
from attnapps.losses import sequence_loss
from attnapps.metrics import cider_d, corpus_bleu_nltk
from attnapps.plots import attention_heatmap, attention_over_image
from attnapps.report import section, table
from attnapps.task import Diagnoser, Evaluation, Explainer, Reporter, Task, register_task, windows

from . import diagnostics, outputs
from .config import CaptioningConfig, CaptioningPredict
from .data import PreparedImages, karpathy_file, load_karpathy, write_prepared
from .features import build_encoder, cached_extract, load_pixels
from .grounding import pointing_game
from .memory import PackedCaptions, RetrievedMemory, collate_memory
from .model import ARCHS
from .retrieval import ConsensusScorer, global_features, knn_captions, neighbours, retrieval_baseline
from .scst import scst_loss
from .strategy import Strategy
from .synthetic import ensure_synthetic


METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")


def trains_encoder(cfg) -> bool:
    """The encoder trains (``small_cnn``, or ``encoder.finetune``): no fixed features to cache or retrieve with."""
    return cfg.encoder.name == "small_cnn" or cfg.encoder.finetune


def uses_memory(cfg) -> bool:
    """The decoder reads retrieved captions: ``model.retrieval_k`` > 0, an architecture that reads them, and
    fixed features to retrieve with (which also give a saved run its index of training images)."""
    return cfg.model.retrieval_k > 0 and ARCHS[str(cfg.model.arch)].reads_memory and not trains_encoder(cfg)


@dataclass
class CaptioningState:
    """What a trained captioner needs besides its weights and the retrieval index: the word vocabulary."""

    vocab: Vocab

    def to_dict(self) -> dict:
        return {"vocab": self.vocab.state_dict()}

    @classmethod
    def from_dict(cls, state: dict) -> "CaptioningState":
        return cls(Vocab.from_state(state["vocab"]))


@register_task("captioning")
class CaptioningTask(Task, Reporter, Explainer, Diagnoser):
    metric_keys, run_files = outputs.METRIC_KEYS, outputs.RUN_FILES  # what a run writes (attnapps.outputs)
    config_class, state_class = CaptioningConfig, CaptioningState
    aliases = {"encoder": "encoder.name"}  # `encoder=X` is short for `encoder.name=X`
    renamed = {"decode.samples": "report.examples", "decode.figures": "report.figures"}  # old names, for one release
    predict_config_class = CaptioningPredict
    primary_metric = "cider"
    higher_is_better = True
    count_unit = "captions"
    # attnapps.study: a quick look that learns something (CIDEr-D 1.96 vs the most frequent caption's 1.06, README)
    study_presets = {"quick": ["trainer.max_steps=200", "trainer.warmup_steps=20", "decode.strategy=greedy"]}
    secondary_metrics, study_figure = ("bleu4", "grounding"), "attention_0.png"  # what attnapps.study shows of this task

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        check_heads(cfg.model, cfg.model.hidden_size, "model.hidden_size")
        if cfg.decode.strategy == "knn" and not uses_memory(cfg):
            raise ConfigError("decode.strategy=knn: captions by retrieval need the retrieved memory's index of "
                              "training images (a frozen encoder, model.arch=show_attend_tell, model.retrieval_k > 0)")

    encoder = baseline = None
    knn_k = None  # set when the run chose knn on valid (saved with the best weights): predict retrieves too
    _knn_scorer = None  # (training captions as words, their ConsensusScorer): built once for predict/serve
    vocab = property(lambda self: self.state.vocab if self.state else None)
    store = None  # (images, regions, channels) fp16 features or (images, 3, S, S) uint8 pixels

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info: dict = {}  # the feature extraction's numbers (set by build_data; one dict per task)
        self.strategy = Strategy(self)  # how the final evaluation decodes (chosen on valid after training)
        m = self.cfg.model
        self.memory = RetrievedMemory(m.retrieval_k, self.cfg.data.captions_per_image, m.memory_len)

    # ------------------------------------------------------------------ data
    @property
    def trains_encoder(self) -> bool:
        return trains_encoder(self.cfg)

    def build_encoder(self):
        e = self.cfg.encoder
        return build_encoder(e.name, e.weights, e.image_size)

    def write_hub(self, datasets, columns, folder):
        """``data.hf=``: the images under ``images/`` (their bytes as stored, or the files an image column
        names) and a Karpathy-format ``dataset.json`` with each row's captions: one column holding a string
        or a list of them, or several joined by ``+`` (``captions=caption_0+caption_1+caption_2``)."""
        import datasets as hf

        train = datasets["train"]
        image = columns.get("image", "image")
        have = hub.columns_of(train)
        captions = columns.get("captions") or next((c for c in ("captions", "caption", "sentences", "text")
                                                    if c in have), "captions")
        (folder / "images").mkdir()
        entries, split_name = [], {"train": "train", "valid": "val", "test": "test"}
        for split, dataset in datasets.items():
            if image in dataset.features and isinstance(dataset.features[image], hf.Image):
                dataset = dataset.cast_column(image, hf.Image(decode=False))  # the stored bytes, not decoded
            parts = {f"caption{k}": c for k, c in enumerate(captions.split("+"))}  # caption_0+caption_1+...
            for i, row in enumerate(hub.rows(dataset, {"image": image, **parts}, self.cfg.data.hf)):
                picture = row["image"]
                caps = [c for k in parts for c in ([row[k]] if isinstance(row[k], str) else row[k] or [])]
                source = picture.get("path") if isinstance(picture, dict) else picture
                suffix = Path(str(source or "")).suffix.lower() or ".jpg"
                name = f"{split}-{i:07d}{suffix if len(suffix) <= 5 else '.jpg'}"
                if isinstance(picture, dict) and picture.get("bytes"):
                    (folder / "images" / name).write_bytes(picture["bytes"])
                elif source and Path(str(source)).is_file():
                    shutil.copyfile(str(source), folder / "images" / name)
                else:
                    raise DataError(self.cfg.data.hf, None, f"{split} row {i}: no image in column {image!r}")
                entries.append({"filename": name, "split": split_name[split],
                                "sentences": [{"raw": str(c)} for c in caps if str(c).strip()]})
        (folder / "dataset.json").write_text(json.dumps({"dataset": str(self.cfg.data.hf), "images": entries}),
                                             encoding="utf-8")
        return {"image_dir": ""}

    def build_data(self):
        """The splits over the prepared store (:meth:`prepare_data`: ``dataset.json`` parsed and its captions
        encoded once per data and options) and the feature (or pixel) cache, read by position:
        ``self.items[split]`` the kept images (:class:`.data.PreparedImages`), the datasets
        ``(row, caption ids, memory)`` per image made when a batch asks for them."""
        d, e = self.cfg.data, self.cfg.encoder
        cache = cache_root(d.cache_dir)
        root = Path(d.path) if d.path else ensure_synthetic(cache, d.synthetic_seed)
        meta, self.root = karpathy_file(root)
        self.meta = meta
        if not meta.is_file():
            raise DataError(meta, None, "no such file (data.path= must be a folder with the Karpathy-format "
                                        "dataset.json and its images)")
        options = {"on_error": d.on_error, "image_dir": d.image_dir, "max_images": d.max_images,
                   "min_freq": d.min_freq, "max_len": d.max_len}
        given = self.state  # a checkpoint's vocabulary (resume, predict)
        store = self.prepared([meta], options, self.prepare_data, d.cache_dir)
        if store.notes.get("carve_seed") not in (None, self.cfg.seed):  # valid was cut from train with another
            self.state = given  # seed: this seed's own store (data with a valid split shares one across seeds)
            store = self.prepared([meta], {**options, "carve_seed": self.cfg.seed}, self.prepare_data, d.cache_dir)
        self.policy = ErrorPolicy(d.on_error)
        self.policy.skipped, self.policy.examples = store.notes["skipped"], list(store.notes["skip_examples"])
        self.top_caption = store.notes["top_caption"]
        images = {split: PreparedImages(store, split, self.root) for split in ("train", "valid", "test")}
        self.encoder = self.build_encoder()
        paths = [p for split in images.values() for p in split.paths()]
        blob, hit, file = cached_extract(
            cache, paths, None if self.trains_encoder else self.encoder, e.name, e.weights,
            self.encoder.image_size, self.policy, batch_size=e.batch_size, progress=self.cfg.trainer.progress)
        self.store = blob["data"]
        self.feature_info = {"cache_hit": hit, "file": str(file), "images_per_sec": blob["images_per_sec"],
                             "seconds": blob["seconds"], "kind": "pixels" if self.trains_encoder else "features"}
        info = self.prepared_info  # the captions' store, and the feature cache: together this task's prepared data
        self.prepared_info = {"hit": info["hit"] and hit, "path": info["path"], "features": str(file),
                              "seconds": info["seconds"] + (0.0 if hit else blob["seconds"]),
                              "prepared_seconds": info["prepared_seconds"] + blob["seconds"]}
        row_of = np.full(len(paths), -1, dtype=np.int64)  # path index -> row (-1: the image could not be read)
        row_of[np.fromiter(blob["rows"], dtype=np.int64, count=len(blob["rows"]))] = list(blob["rows"].values())
        self.items, start = {}, 0
        for split, split_images in images.items():
            rows = row_of[start: start + len(split_images)]
            index = np.flatnonzero(rows >= 0)
            self.items[split] = split_images.kept(rows[index], index)
            start += len(split_images)
        self.memory.build(self.store, {split: torch.from_numpy(kept.rows) for split, kept in self.items.items()},
                          self.caption_ids("train"))
        memory = (lambda split, i: self.memory.of_example(split, i)) if self.arch.reads_memory \
            else (lambda split, i: None)
        return {split: View(len(kept), lambda i, split=split, kept=kept: (int(kept.rows[i]), kept.ids(i),
                                                                          memory(split, i)))
                for split, kept in self.items.items()}

    def prepare_data(self, writer) -> None:
        """Parse ``dataset.json`` (:func:`.data.load_karpathy`), cut a valid split from train when it has
        none (5%, ``seed``), fit the vocabulary on the training captions (unless a checkpoint gave it) and
        write every split's captions and images into the store (:func:`.data.write_prepared`)."""
        d = self.cfg.data
        splits, policy = load_karpathy(self.meta, d.on_error, d.image_dir, d.max_images)
        carved = not splits["valid"]
        if carved:
            splits["train"], splits["valid"] = carve(splits["train"], 0.05, self.cfg.seed)
        self.fitted(lambda: CaptioningState(  # or the checkpoint's vocabulary (resume, predict)
            Vocab.build((c for it in splits["train"] for c in it.captions), min_freq=d.min_freq)))
        notes = write_prepared(writer, splits, self.root, self.vocab, d.max_len)
        writer.notes.update(notes, skipped=policy.skipped, skip_examples=policy.examples,
                            carve_seed=self.cfg.seed if carved else None)

    def caption_ids(self, split: str) -> View:
        """Token ids of each kept image's captions, read when asked for."""
        kept = self.items[split]
        return View(len(kept), kept.ids)

    def references(self, split: str, n: int | None = None) -> View:
        """The first ``n`` (all) kept images' captions as words: what the metrics score against."""
        kept = self.items[split]
        return View(len(kept) if n is None else min(n, len(kept)), kept.words)

    def collate(self, examples):
        n = self.cfg.data.captions_per_image
        images = self.store[torch.tensor([row for row, _, _ in examples])]  # (batch, ...) features or pixels
        caps, owner = [], []
        for i, (_, cs, _) in enumerate(examples):
            caps += cs[:n]
            owner += [i] * len(cs[:n])
        batch = dict(self.collate_captions(images, caps, owner), **collate_memory([m for _, _, m in examples]))
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
    @property
    def arch(self) -> type:
        """The chosen architecture's model class: what the task asks about it instead of testing its name."""
        return ARCHS[str(self.cfg.model.arch)]

    def build_model(self):
        self.ensure_encoder()
        model = self.arch
        return model(arch_config(self.cfg.model, model.config_class), len(self.vocab), self.encoder.out_channels,
                     self.encoder, self.trains_encoder, self.regions(), memory=self.uses_memory, pad_id=PAD)

    @property
    def uses_memory(self) -> bool:
        return uses_memory(self.cfg)

    def ensure_encoder(self) -> None:
        """A rebuilt saved run's encoder, untrained (the checkpoint holds its weights; its shape is enough
        to count the regions of an ONNX export's images)."""
        if self.encoder is None:
            e = self.cfg.encoder
            self.encoder = build_encoder(e.name, "", e.image_size)

    def regions(self) -> int:
        """Regions per image. Pixels: one encoder pass on a blank image, once (the mode is restored, so
        a call during training leaves a trained encoder's BatchNorm training)."""
        if self.store is not None and self.store.dim() == 3:
            return self.store.size(1)
        if getattr(self, "_regions", None) is None:
            self.ensure_encoder()
            was_training, size = self.encoder.training, self.encoder.image_size
            with torch.no_grad():
                self._regions = self.encoder.eval()(torch.zeros(1, 3, size, size, dtype=torch.uint8)).size(1)
            self.encoder.train(was_training)
        return self._regions

    def training_phase(self) -> int:
        """1 once self-critical training has begun (it gets its own ``trainer.patience``), else 0."""
        return int(self.scst_after < 1 and self.budget_fraction() >= self.scst_after)

    def loss(self, model, batch):
        if self.training_phase():
            return scst_loss(model, batch, self.cfg.model.scst_samples, self.cfg.decode.max_len, self.id_scorer)
        memory = {k: batch[k] for k in ("memory", "memory_rank") if k in batch}
        # logits or (with the memory) log-probabilities (n, len, V); attention (n, len, R [+ mem_len])
        logits, alphas = model(batch["images"], batch["cap_in"], batch["owner"], **memory)
        target = batch["cap_out"]
        nll, _ = sequence_loss(logits, target, PAD, self.cfg.model.label_smoothing)
        lam = self.cfg.model.doubly_stochastic
        if lam > 0:  # a key of show_attend_tell's only (another architecture's run rejects it when set)
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

    @property
    def id_scorer(self) -> ConsensusScorer:
        """CIDEr-D between token-id captions, document frequencies from the training captions."""
        if getattr(self, "_id_scorer", None) is None:
            train = self.datasets["train"]  # (row, caption ids, memory) per image, read one at a time
            self._id_scorer = ConsensusScorer(View(len(train), lambda i: train[i][1]))
        return self._id_scorer

    # ------------------------------------------------------------------ decoding and metrics
    def caption_images(self, model, images, beam: int = 1, alpha: float = 0.0, memory: dict | None = None,
                       n_best: int = 1, options=None):
        """Images (features or pixels, a batch) [+ their retrieved ``memory``/``memory_rank``] ->
        Hypotheses (tokens, scores, attention (len, R [+ mem_len])); ``options``: the decoding rules,
        sampling and coverage penalty (:func:`attnapps.decoding.decode_batches`; default: the run's ``decode``)."""
        inputs = {"images": images.to(self.device), **{k: v.to(self.device) for k, v in (memory or {}).items()}}
        rows = list(range(images.size(0)))
        return decode_batches(model, rows, lambda chunk: ({k: v[chunk] for k, v in inputs.items()},
                                                          self.cfg.decode.max_len),
                              BOS, EOS, beam, alpha, n_best, batch_size=max(1, len(rows)), device=self.device,
                              attention=isinstance(model, nn.Module),  # an ONNX export records no attention
                              options=self.cfg.decode if options is None else options)

    def example_inputs(self, chunk: list) -> tuple[dict, int]:
        """Dataset examples ``(row, captions, memory)`` -> the model's ``encode`` inputs, and max_len."""
        images = self.store[torch.tensor([row for row, _, _ in chunk])].to(self.device)
        memory = {k: v.to(self.device) for k, v in collate_memory([m for _, _, m in chunk]).items()}
        return {"images": images, **memory}, self.cfg.decode.max_len

    def decode_images(self, model, examples: list, beam: int = 1, alpha: float = 0.0, n_best: int = 1):
        """Hypotheses for dataset examples ``(row, captions, memory)``, in batches of 64, with the attention
        of the best ones."""
        return decode_batches(model, examples, self.example_inputs, BOS, EOS, beam, alpha, n_best, batch_size=64,
                              device=self.device, options=self.cfg.decode)

    def caption_attention(self, model, examples: list, captions: list[list[int]]) -> list:
        """The decoding attention of ``captions`` (one per example), 64 at a time (:func:`step_attention`)."""
        out = []
        for s in range(0, len(examples), 64):
            out += step_attention(model, self.example_inputs(examples[s:s + 64])[0], captions[s:s + 64], BOS,
                                  self.device)
        return out

    def evaluate(self, model, split, final=False):
        dec, written = self.cfg.decode, False
        if not final:
            hyps, attns = self.strategy.decode_split(model, split, dec.valid_subset)  # greedy, on a subset
            words = [self.vocab.decode(h) for h in hyps]
        else:  # window by window, the test captions written as they come
            choice, words, attns, kept = self.strategy.choose(model), [], [], self.items[split]
            with self.output_lines("test_captions.txt" if split == "test" else "") as sink:
                for part in windows(len(self.datasets[split])):
                    w, a = self.strategy.captions(model, split, choice, part)
                    sink.write([f"{kept.name(j)}\t{' '.join(x)}" for j, x in zip(part, w)])
                    words += w
                    attns += a
            written = sink.written
        r = self.regions()  # attention rows: regions, then (with the memory) retrieved tokens
        mem_attns = [a[:, r:] if a is not None and a.size(1) > r else None for a in attns]
        attns = [a[:, :r] if a is not None else None for a in attns]
        refs = self.references(split, len(words))
        out = corpus_bleu_nltk(words, refs)
        out["cider"] = cider_d(words, refs)[0]
        g = pointing_game(View(len(words), lambda i: self.items[split].item(i)), words, attns)
        if g is not None:
            out["grounding"], out["grounding_chance"] = g["accuracy"], g["chance"]
        return Evaluation(out, {"words": words, "attention": attns, "grounding": g, "memory_attention": mem_attns,
                                "metrics": out, "written": written})

    def trivial_baseline(self, split):
        """Every image gets the training split's most frequent caption (counted when the data was prepared)."""
        top, refs = self.top_caption, self.references(split)
        out = corpus_bleu_nltk([top] * len(refs), refs)
        return {"bleu4": out["bleu4"], "cider": cider_d([top] * len(refs), refs)[0]}

    def extra_metrics(self, model):
        info = self.feature_info
        return {"features.images_per_sec": info.get("images_per_sec", 0.0),
                "features.seconds": info.get("seconds", 0.0), "features.cache_hit": int(info.get("cache_hit", False))}

    def probes(self, model, indices):
        return diagnostics.probes(self, model, indices)

    # ------------------------------------------------------------------ report and predict
    def report(self, model, run_dir, results):
        run_dir, m = Path(run_dir), self.cfg.model
        info, test = self.feature_info, results["test"]
        words, attns, scores, g, mem_attns = (test["words"], test["attention"], test["metrics"], test["grounding"],
                                              test["memory_attention"])
        if not test.get("written"):  # (the final evaluation wrote them as they came)
            (run_dir / "test_captions.txt").write_text(
                "".join(f"{self.items['test'].name(j)}\t{' '.join(w)}\n" for j, w in enumerate(words)), encoding="utf-8")
        sat = "attention" in arch_keys(m)  # one attention variant to name
        memory = ("off (" + ("the encoder trains, so there are no fixed features to retrieve with"
                             if self.trains_encoder and m.retrieval_k > 0 else "model.retrieval_k=0") + ")")
        if self.uses_memory:
            memory = (f"the captions of the {m.retrieval_k} nearest training images (at most {m.memory_len} tokens), "
                      "attended and copied from")
        lines = section("Captioning", [
            f"data: {self.cfg.data.path or 'synthetic shapes (generated)'} at `{self.root}`; images "
            f"train {len(self.datasets['train'])}, valid {len(self.datasets['valid'])}, test {len(self.datasets['test'])}; "
            f"vocabulary {len(self.vocab)} (min_freq {self.cfg.data.min_freq})",
            f"bad entries / unreadable images skipped: {self.policy.skipped}",
            f"encoder: {self.describe_encoder()}, {self.encoder.image_size} px, "
            f"{self.regions()} regions of {self.encoder.out_channels} channels",
            f"{info['kind']} cache {'hit' if info['cache_hit'] else 'miss (built now)'}: `{info['file']}`; "
            f"extraction {info['images_per_sec']:.1f} images/s",
            f"decoder: {m.arch}" + (f", attention {m.attention}" if sat else "")
            + f"; test decoding: {self.strategy.describe()}",
            f"training loss: cross-entropy (label smoothing {m.label_smoothing})"
            + (f", then self-critical CIDEr-D ({m.scst_samples} samples per image) from {self.scst_after:.0%} of the "
               "budget" if self.scst_after < 1 else
               " only" + (" (model.scst_after=-1: no self-critical phase when the encoder trains)" if m.scst_after < 0 else "")),
            "retrieved memory: " + (memory if sat else "off (show_attend_tell only)")])
        base = self.retrieval_baseline(model)
        lines += ["", "### Test set: this model against nearest-neighbour retrieval", ""]
        lines += table(["captioner", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D"], [
            [f"{m.arch}{' + retrieved memory' if self.uses_memory else ''}", *(f"{scores[k]:.4f}" for k in METRICS)],
            [f"k-NN consensus (k={base['k']}, chosen on valid)", *(f"{base['test'][k]:.4f}" for k in METRICS)],
            ["1-NN (caption of the closest training image)", *(f"{base['nn1']['test'][k]:.4f}" for k in METRICS)]])
        lines += ["", f"Retrieval uses the {base['features']} (mean over regions, cosine similarity); the k-NN consensus "
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
        lines += ["", "Test captions: `test_captions.txt`.", "", "### Samples (test)", ""]
        lines += table(["image", "generated", "references (first two)"],
                       [[it.name, join_words(w), " / ".join(join_words(c) for c in it.captions[:2])]
                        for (_, it), w in zip(self.items["test"][: self.cfg.report.examples], words)])
        lines += ["", "### Where the decoder looked (test images, test decoding)", ""]
        for n, ((_, it), w, a) in enumerate(zip(self.items["test"][: self.cfg.report.figures], words, attns)):
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
        if self.baseline is not None:
            return self.baseline
        if self.store.dim() == 3:
            feats, what = self.memory.global_feats, "cached encoder features"
        else:
            chunks = []
            model.eval()
            with torch.no_grad():
                for s in range(0, self.store.size(0), 256):
                    chunks.append(global_features(model.images(self.store[s:s + 256].to(self.device)).cpu()))
            feats, what = torch.cat(chunks), "trained encoder's features"
        parts = [(feats[torch.from_numpy(self.items[split].rows)], self.references(split))
                 for split in ("train", "valid", "test")]
        out = retrieval_baseline(*parts)
        out["features"], out["feats"] = what, feats
        self.baseline = out
        return out

    @property
    def scorer(self) -> ConsensusScorer:
        if getattr(self, "_scorer", None) is None:
            self._scorer = ConsensusScorer(self.references("train"))
        return self._scorer

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
        return attention_over_image(pixels, words, maps, out, title=join_words(words))

    def predict(self, model, options):
        if not options.image:
            raise ConfigError("image=: give an image file (or several, comma-separated)")
        paths = [Path(p) for p in options.image.split(",") if p]
        size = self.pixel_size(model)
        for n, p in enumerate(paths):
            try:
                pixels = load_pixels(p, size).unsqueeze(0)  # (1, 3, S, S)
            except FileNotFoundError:
                raise ConfigError(f"image={p}: no such file") from None
            except Exception as e:
                raise ConfigError(f"image={p}: cannot read image ({type(e).__name__})") from None
            self.check_onnx_retrieval(model)
            knn = self.knn_captions(model, pixels)  # the run chose retrieval on valid
            out = None if knn else self.caption_images(model, pixels, options.beam, options.alpha,
                                                       self.predict_memory(model, pixels), options=options)
            words = knn[0] if knn else self.vocab.decode(out.tokens[0])
            print(join_words(words) if len(paths) == 1 else f"{p}\t{join_words(words)}")
            if options.plot and out is not None and out.attention[0] is not None and words:
                plot = Path(options.plot)
                if len(paths) > 1:
                    plot = plot.with_name(f"{plot.stem}_{n}{plot.suffix or '.png'}")
                self.figure(p, words, out.attention[0], plot)

    def export_inputs(self, model, batch: int, length: int, generator):
        """ONNX export (:mod:`attnapps.export.graphs`): random pixels through the kept CNN (and, with the
        retrieved memory, random retrieved captions), as ``encode`` reads them when predicting."""
        encoder = model.images.encoder
        if encoder is None:
            raise ConfigError("this run keeps no image encoder (its features were cached): nothing reads pixels to export")
        size = encoder.image_size
        inputs = {"images": torch.randint(0, 256, (batch, 3, size, size), generator=generator,
                                          dtype=torch.uint8)}  # (batch, 3, S, S) as load_pixels reads them
        if getattr(model, "memory", False):
            memory, _ = random_ids(batch, length, len(self.vocab.itos), generator, PAD)  # (batch, mem_len)
            ranks = torch.randint(0, model.mem_rank.num_embeddings, memory.shape, generator=generator)
            inputs.update(memory=memory, memory_rank=ranks * (memory != PAD))
        return ExampleInputs(inputs, BOS, EOS)

    @staticmethod
    def pixel_size(model) -> int:
        """The side of the square images the model reads (its CNN's, or the ONNX export's input)."""
        return model.images.encoder.image_size if isinstance(model, nn.Module) else model.input_shape("images")[-1]

    def check_onnx_retrieval(self, model) -> None:
        if not isinstance(model, nn.Module) and (self.knn_k or self.uses_memory):
            raise ConfigError("this run captions by retrieval from its training images, which needs the CNN's "
                              "features: use the run directory, not its ONNX export")

    serve_input = "image"
    serve_options = ("beam", "alpha")
    serve_limits = {"beam": "max_beam"}  # what attnapps.serve caps (its max_* keys)
    predict_defaults = "decode"  # predict and the server decode as the run did unless asked otherwise

    @torch.no_grad()
    def infer(self, model, inputs, options):
        """RGB PIL images -> their captions, with the decoder's attention over the image's grid of
        regions for each word (and over the retrieved captions, with the memory)."""
        pixels = torch.stack([load_pixels(im, self.pixel_size(model)) for im in inputs])  # (b, 3, S, S)
        self.check_onnx_retrieval(model)
        knn = self.knn_captions(model, pixels)  # the run chose retrieval on valid: no attention to show
        if knn:
            return [self.explain_caption(image, words, None, [], title="your image (k-NN consensus caption)")
                    for image, words in zip(inputs, knn)]
        memory = self.predict_memory(model, pixels)
        hyps = self.caption_images(model, pixels, options.beam, options.alpha, memory, options=options)
        layers = self.layer_views(model, pixels, hyps.tokens)
        out = []
        for i, (image, tokens, attn) in enumerate(zip(inputs, hyps.tokens, hyps.attention)):
            mem = memory["memory"][i].tolist() if "memory" in memory else []
            out.append(self.explain_caption(image, self.vocab.decode(tokens), attn, mem, title="your image",
                                            layers=layers[i]))
        return out

    def layer_views(self, model, images, captions: list[list[int]]) -> list[list[dict]]:
        """The Transformer captioner's every layer and head (cross-attention over the regions, causal
        self-attention), recorded with each caption forced through the decoder; none for Show, Attend
        and Tell (its one attention is the decoding attention already shown)."""
        if not self.arch.layered:
            return [[] for _ in captions]
        words = [self.vocab.decode(c) for c in captions]
        seqs = [{"caption": w, "caption_in": ["<s>"] + w[:-1], "image": [None] * self.regions()} for w in words]
        views = forced_views(model, lambda cap_in: model(images.to(self.device), cap_in.to(self.device),
                                                         torch.arange(len(captions), device=self.device)),
                             captions, BOS, seqs, encoder_decoder_route("image", "caption", "caption_in"))
        return [v if w else [] for v, w in zip(views, words)]

    def explore(self, model, results, n):
        test = results["test"]
        out = []
        for i, ((_, it), words) in enumerate(zip(self.items["test"][:n], test["words"])):
            attn, mem = test["attention"][i], test["memory_attention"][i]
            if attn is not None and mem is not None:
                attn = torch.cat([attn, mem], 1)  # (len, regions + memory)
            row = self.datasets["test"][i][0]
            tokens = self.vocab.encode(words)
            layers = self.layer_views(model, self.store[torch.tensor([row])], [tokens])[0]
            with Image.open(it.path) as image:
                ex = self.explain_caption(image.convert("RGB"), words, attn, self.datasets["test"][i][2][0]
                                          if mem is not None else [], title=it.name, layers=layers)
            ex["refs"] = [join_words(c) for c in it.captions]
            out.append(ex)
        return out

    def explain_caption(self, image, words: list[str], attn, memory_ids: list[int], title: str,
                        layers: list[dict] = ()) -> dict:
        """One captioned image for the explorer: ``attn (len, regions [+ memory])`` (the decoding
        attention), and ``layers``, further views (:meth:`layer_views`)."""
        r = self.regions()
        k = int(round(math.sqrt(r)))
        seqs = {"caption": list(words) or ["(empty)"]}
        views = []
        if attn is not None and words and k * k == r:
            a = attn[: len(words)].float().cpu()  # (words, regions [+ memory])
            views.append(view("attention over the image's regions", "caption", "image", a[:, :r]))
            if memory_ids and a.size(1) > r:
                seqs["memory"] = [self.vocab.itos[t] if t != EOS else "|" for t in memory_ids][: a.size(1) - r]
                views.append(view("attention over the retrieved captions", "caption", "memory",
                                  a[:, r: r + len(seqs["memory"])]))
            if layers:
                seqs["caption_in"] = ["<s>"] + list(words[:-1])
                views += list(layers)
        return example(seqs, views, image={"src": image_uri(image), "grid": [k, k]}, text=join_words(words), title=title)

    def predict_memory(self, model, pixels) -> dict:
        """The retrieved memory of a new image: its nearest training images by the saved index."""
        if not self.uses_memory or self.memory.index is None:
            return {}
        model.eval()
        with torch.no_grad():
            return self.memory.of_features(model.images(pixels.to(self.device)).cpu())

    def state_dict(self):
        state = super().state_dict()  # the vocabulary
        if self.memory.index is not None:  # prediction retrieves from the training images as in training
            captions = self.memory.index["captions"]  # packed tensors (a list in checkpoints before them)
            state["retrieval"] = {"keys": self.memory.index["keys"],
                                  "captions": captions.to_dict() if isinstance(captions, PackedCaptions) else captions}
        if self.strategy.name == "knn":  # chosen on valid: predict and the server caption by retrieval too
            state["knn_k"] = int(self.baseline["k"])  # the baseline was computed when knn was scored
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        index = state.get("retrieval")
        self.memory.index = index and {"keys": index["keys"], "captions": PackedCaptions.of(index["captions"])}
        self.knn_k, self._knn_scorer = state.get("knn_k"), None

    def knn_captions(self, model, pixels) -> list[list[str]] | None:
        """New images' k-NN consensus captions from the saved index, when the run chose ``knn`` on valid
        (``decode.strategy=auto``); None otherwise."""
        if not self.knn_k or self.memory.index is None:
            return None
        model.eval()
        with torch.no_grad():
            query = global_features(model.images(pixels.to(self.device)).cpu())  # (batch, channels)
        if self._knn_scorer is None:
            train_caps = [[self.vocab.decode(c) for c in caps] for caps in self.memory.index["captions"]]
            self._knn_scorer = train_caps, ConsensusScorer(train_caps)
        train_caps, scorer = self._knn_scorer
        near = neighbours(query, self.memory.index["keys"].float(), self.knn_k)  # (batch, k)
        return knn_captions(near, train_caps, self.knn_k, scorer)
