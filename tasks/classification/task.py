"""``task=classification``: train an attention text classifier, score it (accuracy, macro-F1), and show
which tokens it attended to.

    python -m attnapps.run task=classification [model.arch=transformer] [model.attention=dot] [data.path=DIR]
    python -m attnapps.predict task=classification run=RUN_DIR [input=FILE] [top=5]
"""

from __future__ import annotations

import csv
import html
import inspect
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from attnapps.export.graphs import ExampleInputs, random_ids
from attnapps.config import arch_config, check_heads
from attnapps.data import TokenizerState, fit_tokenizer, hub, pad_batch, tokenizer_from_state
from attnapps.attention.record import record
from attnapps.data.files import ErrorPolicy, read_input
from attnapps.data.prepared import Table
from attnapps.explorer import example, recorded_views, view
from attnapps.errors import ConfigError, DataError
from attnapps.metrics import classification_report
from attnapps.plots import confusion_matrix_plot, shade_tokens_html, shade_tokens_png
from attnapps.report import section, table
from attnapps.task import Diagnoser, Evaluation, Explainer, Reporter, Task, register_task

from . import auto, diagnostics, outputs, tfidf
from .baseline import describe as describe_baseline, fit as fit_baseline
from .config import ClassificationConfig, ClassificationModel, ClassificationPredict
from .data import Encoded, example_files, load_examples
from .model import ARCHS, Ensemble, ngram_vocabulary

EMBEDDED_NAMES = {"en": "embedded Rotten Tomatoes snippets", "zh": "embedded Chinese program strings (data.embedded=zh)"}
PNG_TOKENS = 120  # tokens of a long text drawn in the PNG (the HTML has them all)
ENCODE_BATCH = 10000  # texts encoded at once while preparing the data
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")  # where han cuts a text into sentences


POOLINGS = {"bilstm_attention": ("attention", "flatten"), "transformer": ("attention", "mean", "cls")}


@dataclass
class ClassificationState(TokenizerState):
    """What a trained classifier needs besides its weights: the tokenizer, the label names in the order of
    the outputs, (``model.min_count > 0``) the n-gram vocabulary, fitted on the training tokens, and
    (``model.tfidf=on``) the TF-IDF companion (:func:`tfidf.fit`) with its share of the vote chosen on valid."""

    labels: list = field(default_factory=list)
    ngram_keys: Any = None
    tfidf: dict | None = None
    share: float | None = None

    def to_dict(self) -> dict:
        state = {**super().to_dict(), "labels": list(self.labels)}
        extra = {"ngram_keys": self.ngram_keys, "tfidf": self.tfidf, "share": self.share}
        return {**state, **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def from_dict(cls, state: dict) -> "ClassificationState":
        return cls(tokenizer_from_state(state["tokenizer"]), list(state["labels"]), state.get("ngram_keys"),
                   state.get("tfidf"), state.get("share"))


@register_task("classification")
class ClassificationTask(Task, Reporter, Explainer, Diagnoser):
    metric_keys, run_files = outputs.METRIC_KEYS, outputs.RUN_FILES  # what a run writes (attnapps.outputs)
    evaluates_loss = True  # run_split scores the loss in its own pass over the split
    config_class, state_class = ClassificationConfig, ClassificationState
    aliases = {"tokenizer": "tokenizer.kind"}  # `tokenizer=X` is short for `tokenizer.kind=X`
    predict_config_class = ClassificationPredict
    primary_metric = "macro_f1"
    higher_is_better = True
    count_unit = "examples"
    encoding_state = ("tokenizer", "labels")  # what the prepared ids and label indices depend on

    study_presets = {"quick": ["report.baseline=false"]}  # attnapps.study: what keeps a quick look quick
    secondary_metrics, study_figure = ("accuracy",), "attention_tokens.png"  # what attnapps.study shows of this task

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        m = cfg.model
        if m.arch == "auto":
            return
        if m.arch in POOLINGS and m.pooling not in POOLINGS[m.arch]:
            raise ConfigError(f"model.pooling={m.pooling} does not apply to model.arch={m.arch}; "
                              f"choose {' or '.join(POOLINGS[m.arch])}")
        a = auto.ARCH_DEFAULTS[m.arch]
        width = {"ngram_attention": m.embed_size or a["embed_size"], "transformer": m.hidden_size or a["hidden_size"],
                 }.get(m.arch, 2 * (m.hidden_size or a["hidden_size"]))
        check_heads(m, width, "the attention width (model.embed_size)" if m.arch == "ngram_attention"
                    else "the attention width (from model.hidden_size)")

    policy, auto_notes = None, ()
    tok = property(lambda self: self.state.tok if self.state else None)
    labels = property(lambda self: self.state.labels if self.state else ())
    ngram_keys = property(lambda self: self.state.ngram_keys if self.state else None)

    # ------------------------------------------------------------------ data
    def build_data(self):
        """The splits as :class:`.data.Encoded` ``(ids, label)`` views over the prepared store
        (:meth:`prepare_data`: read, tokenized and encoded once per data and tokenizer options, read by position),
        the texts as ``self.raw``; then the settings chosen from the data (:mod:`.auto`, from the stored
        lengths) and what is fitted on the encoded training texts (n-gram vocabulary, TF-IDF companion)."""
        d, t, m = self.cfg.data, self.cfg.tokenizer, self.cfg.model
        files, listed, has_valid = example_files(d.path, d.format, d.embedded)
        options = {"format": str(d.format), "text_column": d.text_column, "label_column": d.label_column,
                   "on_error": str(d.on_error), "carve_seed": None if has_valid else self.cfg.seed, "listed": listed,
                   "tokenizer": OmegaConf.to_container(t, resolve=True, enum_to_str=True),
                   "sentences": str(m.arch) == "han"}  # han reads its texts as <eos>-separated sentences
        given = self.state
        store = self.prepared(files, options, self.prepare_data, d.cache_dir)
        notes = store.notes
        if given is not None and list(notes["labels"]) != list(given.labels):
            raise DataError(d.path or "data/classification", None, f"the labels {list(notes['labels'])} differ from "
                            f"the checkpoint's {given.labels}")
        self.policy = ErrorPolicy(d.on_error)
        self.policy.skipped, self.policy.examples = notes["skipped"], list(notes["skip_examples"])
        splits = [split for split in ("train", "valid", "test") if f"{split}.ids" in store]
        self.raw = {split: Table(store.column(f"{split}.text"), store.column(f"{split}.label")) for split in splits}
        self.units = tuple(notes["units"])  # char or word n-grams: for the tokenizer and the baseline
        lengths = np.asarray(store.column("train.plain_len")).tolist()  # Python ints: the config takes them
        self.auto_notes = auto.resolve_tokenizer(self.cfg, self.units) + auto.resolve(self.cfg, lengths, len(lengths))
        data = {split: Encoded(store.column(f"{split}.ids"), store.column(f"{split}.y"), d.max_len) for split in splits}
        state = self.state
        # What is fitted on the encoded training texts is kept with the store, keyed by what else it
        # depends on: a later run with the same data and options loads it instead of fitting it again.
        if self.arch.ngram_vocabulary and m.min_count > 0 and state.ngram_keys is None:  # then saved
            state.ngram_keys, info = store.derived(
                "ngram_vocabulary", {"max_len": d.max_len, "ngrams": m.ngrams, "min_count": m.min_count,
                                     "buckets": m.buckets},
                lambda: ngram_vocabulary([ids for ids, _ in data["train"]], m.ngrams, m.min_count, m.buckets))
            self.auto_notes = [*self.auto_notes, f"n-gram vocabulary: {len(self.ngram_keys)} n-grams of 2..{m.ngrams} "
                               f"tokens in at least {m.min_count} training texts (rarer ones add nothing)"]
        if m.tfidf == "on" and state.tfidf is None:  # then saved
            orders = tfidf.orders_for(str(self.cfg.tokenizer.kind))
            state.tfidf, info = store.derived(
                "tfidf", {"max_len": d.max_len, "orders": orders, "C": m.tfidf_c, "classes": len(self.labels),
                          "max_docs": tfidf.MAX_DOCS},
                lambda: tfidf.fit(data["train"], data.get("valid", []), len(self.labels), orders, m.tfidf_c))
            f = state.tfidf
            how = "as set" if m.tfidf_c > 0 else ("chosen on valid, accuracy " + ", ".join(
                f"{a:.4f} at C={c}" for c, a in f["valid_accuracy"].items()) if f["valid_accuracy"] else "no valid split")
            when = (f"kept with the prepared data (fitting took {info['seconds']:.1f} s)" if info["hit"]
                    else f"fitted in {info['seconds']:.1f} s")
            self.auto_notes = [*self.auto_notes, f"TF-IDF companion: {len(f['keys'])} n-grams of 1..{f['orders']} tokens "
                               f"in at least 2 training texts; C={f['C']:g} ({how}); {when}"]
        return data

    def prepare_data(self, writer) -> None:
        """Read the labelled texts (:func:`.data.load_examples`), fit the tokenizer on train (unless a
        checkpoint gave it: ``tokenizer.kind=auto`` takes the units :func:`.auto.text_units` names) and write
        each split's texts, labels and token ids -- whole, cut to ``data.max_len`` only when read -- with the
        training texts' token counts (what the automatic settings are chosen from)."""
        d, t = self.cfg.data, self.cfg.tokenizer
        splits, labels, policy = load_examples(d.path, d.format, d.text_column, d.label_column, d.on_error,
                                               self.cfg.seed, d.embedded)
        train_texts = [text for text, _ in splits["train"]]
        units = auto.text_units(train_texts)
        kind = units[0] if t.kind == "auto" else str(t.kind)
        state = self.fitted(lambda: ClassificationState(  # or the checkpoint's tokenizer and labels (resume, predict)
            fit_tokenizer(kind, train_texts, t.vocab_size, min_freq=t.min_freq, max_size=t.max_size,
                          normalize=t.normalize, lowercase=True), list(labels)))
        index = {label: i for i, label in enumerate(state.labels)}
        sentences = str(self.cfg.model.arch) == "han"
        for split, examples in splits.items():
            ids_col = writer.column(f"{split}.ids", state.tok.vocab_size)
            plain = []
            for start in range(0, len(examples), ENCODE_BATCH):
                texts = [text for text, _ in examples[start:start + ENCODE_BATCH]]
                for text, ids in zip(texts, state.tok.encode_batch(texts)):
                    plain.append(len(ids))
                    ids_col.add((self.sentence_ids(text) if sentences else ids) or [state.tok.unk_id])
            ids_col.close()
            if split == "train":
                writer.array("train.plain_len", np.asarray(plain, dtype=np.int64))
            writer.texts(f"{split}.text", (text for text, _ in examples))
            writer.texts(f"{split}.label", (label for _, label in examples))
            writer.array(f"{split}.y", np.asarray([index.get(label, -1) for _, label in examples], dtype=np.int64))
        writer.notes.update(units=list(units), labels=list(labels), skipped=policy.skipped,
                            skip_examples=policy.examples)

    def sentence_ids(self, text: str) -> list[int]:
        """``han``'s encoding: each sentence's ids followed by ``<eos>``."""
        ids = []
        for sentence in SENTENCE_END.split(text):
            piece = self.tok.encode(sentence)
            if piece:
                ids += piece + [self.tok.eos_id]
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids, at most ``data.max_len``; for ``han`` the sentences are separated by ``<eos>``."""
        ids = self.sentence_ids(text) if self.arch.reads_sentences else self.tok.encode(text)
        return (ids or [self.tok.unk_id])[: self.cfg.data.max_len]

    def write_hub(self, datasets, columns, folder):
        """``data.hf=``: each split as ``{train,valid,test}.csv`` with a ``text,label`` header (csv quotes
        line breaks and commas inside a text); class-label columns give their names."""
        names = {"text": columns.get("text", "text"), "label": columns.get("label", "label")}
        for split, dataset in datasets.items():
            with open(folder / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
                out = csv.writer(f)
                out.writerow(["text", "label"])
                for row in hub.rows(dataset, names, self.cfg.data.hf):
                    out.writerow([str(row["text"] or ""), str(row["label"])])
        return {"format": "csv", "text_column": "text", "label_column": "label"}

    def lengths(self, split):
        examples = self.datasets[split]
        return examples.lengths if isinstance(examples, Encoded) else [len(ids) for ids, _ in examples]

    def collate(self, examples):
        ids, lengths = pad_batch([x for x, _ in examples], self.tok.pad_id)  # (batch, len), (batch,)
        return {"ids": ids, "lengths": lengths, "label": torch.tensor([y for _, y in examples])}

    # ------------------------------------------------------------------ model
    @property
    def logits_count(self) -> int:
        """One logit for two labels (sigmoid), else one per label."""
        return 1 if len(self.labels) == 2 else len(self.labels)

    def build_model(self):
        m = self.cfg.model
        if m.ensemble < 1:
            raise ConfigError(f"model.ensemble={m.ensemble}: must be >= 1")
        model = self.build_single() if m.ensemble == 1 else Ensemble([self.build_single() for _ in range(m.ensemble)])
        if self.state.tfidf is None:
            return model
        return tfidf.WithTfidf(model, tfidf.TfidfCompanion(self.state.tfidf), self.share())

    def share(self) -> float:
        """The TF-IDF companion's share of the vote: as set, or as last chosen on valid (1/2 before that)."""
        m = self.cfg.model
        return m.tfidf_share if m.tfidf_share >= 0 else 0.5 if self.state.share is None else self.state.share

    @property
    def selection_metric(self) -> str:
        """With a TF-IDF companion, the model's own macro-F1: the model trains (and stops) as it would alone,
        and the vote is chosen on top of its best weights; the companion, strong from the start, would
        otherwise end the model's training while it still improves."""
        alone = self.state is not None and self.state.tfidf is not None
        return f"model_alone.{self.primary_metric}" if alone else self.primary_metric

    @staticmethod
    def neural(model):
        """The attention model inside (without its TF-IDF companion): what the diagnostics probe."""
        return model.model if isinstance(model, tfidf.WithTfidf) else model

    def build_single(self):
        model = self.arch
        # what the data gives besides the vocabulary; each architecture takes those its constructor names
        given = {"max_len": self.cfg.data.max_len, "sep_id": self.tok.eos_id, "keys": self.ngram_keys}
        takes = inspect.signature(model.__init__).parameters
        return model(arch_config(self.cfg.model, model.config_class), self.tok.vocab_size, self.logits_count,
                     pad_id=self.tok.pad_id, **{k: v for k, v in given.items() if k in takes})

    @property
    def arch(self) -> type:
        """The chosen architecture's model class: what the task asks about it instead of testing its name."""
        return ARCHS[str(self.cfg.model.arch)]

    def probabilities(self, logits):
        """``(batch, classes)`` probabilities from one logit (2 classes, sigmoid) or one per class."""
        return tfidf.probabilities(logits)

    def loss(self, model, batch):
        logits, _ = model(batch["ids"], batch["lengths"])  # (batch, outputs), or (members, batch, outputs)
        return self.loss_of(logits, batch["label"])

    def loss_of(self, logits, y):
        """``(sum, count)``: the loss of ``logits`` for labels ``y`` (each ensemble member scored, then averaged)."""
        members = logits.size(0) if logits.dim() == 3 else 1
        logits = logits.reshape(-1, logits.size(-1)).float()  # (members * batch, outputs)
        y = y.repeat(members)  # each member is scored on the batch; the loss is their mean
        eps = max(0.0, self.cfg.model.label_smoothing)  # < 0 only before auto.py resolved it
        if logits.size(-1) == 1:  # smoothed towards 1/2, as cross_entropy's towards 1/classes
            target = y.float() * (1 - eps) + eps / 2
            loss = F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, reduction="sum")
        else:
            loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=eps)
        return loss / members, torch.tensor(len(y) // members)

    # ------------------------------------------------------------------ evaluation
    def run_split(self, model, split, choose=False):
        """(gold, predicted, probabilities, token weights, votes) over a split, in order. With a TF-IDF
        companion, ``votes`` holds the two models' probabilities apart, and ``choose=True`` first sets its
        share of the vote to the one that scores the split best (:func:`tfidf.best_share`)."""
        gold, probs, weights, parts = [], [], [], ([], [])
        hybrid = model if isinstance(model, tfidf.WithTfidf) else None
        if hybrid is not None:
            hybrid.share = self.share()
        loss = torch.zeros((), dtype=torch.float64)  # the split's loss from the same pass (the model as it
        for batch in self.batches(split, batch_size=128):  # votes before a new share is chosen: self.loss's)
            if hybrid is not None:
                p_model, p_tfidf, w, one = hybrid.parts(batch["ids"], batch["lengths"])
                parts[0].append(p_model)
                parts[1].append(p_tfidf)
                logits = tfidf.mixed_logits(p_model, p_tfidf, hybrid.share, one)
            else:
                logits, w = model(batch["ids"], batch["lengths"])
                probs += self.probabilities(logits).tolist()
            loss += float(self.loss_of(logits, batch["label"])[0])
            gold += batch["label"].tolist()
            weights += [row[:n].tolist() for row, n in zip(w, batch["lengths"].tolist())]
        votes = None
        if hybrid is not None:
            p_model, p_tfidf = (torch.cat(p) if p else torch.zeros(0, len(self.labels)) for p in parts)
            if choose and len(gold):
                def score(pred):
                    return classification_report(gold, pred.tolist(), len(self.labels))[self.primary_metric]
                self.state.share, _ = tfidf.best_share(p_model, p_tfidf, score)
                hybrid.share = self.share()
            probs = tfidf.mix(p_model, p_tfidf, hybrid.share).tolist()
            votes = {"model": p_model, "tfidf": p_tfidf, "share": hybrid.share}
        pred = [max(range(len(p)), key=p.__getitem__) for p in probs]
        self.last_loss = float(loss) / max(1, len(gold))
        return gold, pred, probs, weights, votes

    def evaluate(self, model, split, final=False):
        # the companion's share is chosen on valid while training; the final evaluation keeps the one saved
        # with the best weights
        choose = split == "valid" and self.cfg.model.tfidf_share < 0 and (not final or self.state.share is None)
        gold, pred, probs, weights, votes = self.run_split(model, split, choose)
        r = classification_report(gold, pred, len(self.labels))
        out = {"loss": self.last_loss, "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}  # (one pass: the
        # trainer does not run the split again for its loss)
        if votes is not None:  # each voter alone too: the model's own metric is what training selects by
            out["tfidf_share"] = votes["share"]
            for name in ("model", "tfidf") if final else ("model",):
                alone = classification_report(gold, votes[name].argmax(-1).tolist(), len(self.labels))
                out.update({f"{name}_alone.{k}": alone[k] for k in ("accuracy", "macro_f1")})
        if final:
            for label, c in zip(self.labels, r["per_class"]):
                for k in ("precision", "recall", "f1"):
                    out[f"{label}.{k}"] = c[k]
        return Evaluation(out, {"gold": gold, "pred": pred, "probs": probs, "weights": weights, "report": r,
                                "votes": votes})

    def trivial_baseline(self, split):
        """Every text gets the training split's most frequent label."""
        counts = Counter(y for _, y in self.datasets["train"])
        majority = max(counts, key=lambda y: (counts[y], -y))  # the most frequent; ties: the first label
        gold = [y for _, y in self.datasets[split]]
        r = classification_report(gold, [majority] * len(gold), len(self.labels))
        return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}

    diag_decision = True

    def probes(self, model, indices):
        return diagnostics.probes(self, self.neural(model), indices)

    # ------------------------------------------------------------------ report and predict
    def report(self, model, run_dir, results):
        run_dir, m = Path(run_dir), self.cfg.model
        test = results["test"]
        gold, pred, probs, weights, r = test["gold"], test["pred"], test["probs"], test["weights"], test["report"]
        ensemble = f" (ensemble of {m.ensemble})" if m.ensemble > 1 else ""
        uses = lambda key: str(m.arch) in ClassificationModel.users[key]  # noqa: E731  (the arch has this key)
        attention = f"attention {m.attention}" if uses("attention") else "multi-head self-attention"
        lines = section("Classification", [
            f"data: {self.cfg.data.path or EMBEDDED_NAMES[str(self.cfg.data.embedded)]} ({self.cfg.data.format}); "
            f"train {len(self.datasets['train'])}, valid {len(self.datasets['valid'])}, test {len(self.datasets['test'])}; "
            f"labels: {', '.join(self.labels)}",
            f"malformed lines skipped: {self.policy.skipped if self.policy else 0}",
            f"model: {m.arch}{ensemble}, {attention}" + (f", pooling {m.pooling}" if uses("pooling") else "")
            + "; tokenizer "
            f"{self.cfg.tokenizer.kind}, vocabulary {self.tok.vocab_size}, texts cut at {self.cfg.data.max_len} tokens",
            *[f"chosen from the data: {note}" for note in self.auto_notes]])
        name = f"{m.arch} ({attention}{f', ensemble of {m.ensemble}' if m.ensemble > 1 else ''})"
        rows = [[name, f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"]]
        votes, run = test.get("votes"), results.get("run", {})
        if votes is not None:  # the system is the vote of two models: name it, and show each alone
            f = self.state.tfidf
            how = "as set" if m.tfidf_share >= 0 else "chosen on valid"
            rows = [[f"**{name} + TF-IDF companion, its share of the vote {votes['share']:g} ({how})**",
                     f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"],
                    [f"{name} alone", *(f"{run.get(f'test.model_alone.{k}', float('nan')):.4f}"
                                         for k in ("accuracy", "macro_f1"))],
                    [f"TF-IDF companion alone (1..{f['orders']}-grams of the model's tokens, C={f['C']:g})",
                     *(f"{run.get(f'test.tfidf_alone.{k}', float('nan')):.4f}" for k in ("accuracy", "macro_f1"))]]
        fitted = fit_baseline(self.raw["train"], self.raw["valid"], self.cfg.seed, self.units[0]) \
            if self.cfg.report.baseline else None
        if fitted is not None:
            base = {split: fitted.score(self.raw[split]) for split in ("valid", "test")}
            rows.append([f"{describe_baseline(fitted.kind)}, C={fitted.C:g} (chosen on valid)",
                         f"{base['test']['accuracy']:.4f}", f"{base['test']['macro_f1']:.4f}"])
            (run_dir / "baseline.json").write_text(json.dumps({
                **{f"{split}.{k}": base[split][k] for split in base for k in ("accuracy", "macro_f1")},
                "features": fitted.kind, "C": fitted.C,
                "valid_accuracy_by_C": {f"{c:g}": a for c, a in fitted.valid_accuracy.items()}}, indent=2))
        else:
            rows.append(["TF-IDF + logistic regression", "(install scikit-learn: `pip install scikit-learn`)", ""])
        lines += ["", "### Test set: this model against TF-IDF + logistic regression", ""]
        lines += table(["model", "accuracy", "macro-F1"], rows)
        own = run.get("valid.model_alone.macro_f1", run.get("valid.macro_f1"))
        if fitted is not None and own is not None and base["valid"]["macro_f1"] > own:
            system = ("the system above is the vote, its share chosen on valid" if votes is not None else
                      "`model.tfidf=on` lets the model vote with a TF-IDF companion, its share chosen on valid")
            lines += ["", f"**On valid, TF-IDF + logistic regression is ahead of the attention model alone** (macro-F1 "
                      f"{base['valid']['macro_f1']:.4f} vs {own:.4f}): {system}."]
        if votes is not None:
            valid = {k: run.get(f"valid.{k}", float("nan")) for k in (
                "macro_f1", "model_alone.macro_f1", "tfidf_alone.macro_f1")}
            lines += ["", f"On valid, where the share was chosen (macro-F1): the vote {valid['macro_f1']:.4f}, the "
                      f"model alone {valid['model_alone.macro_f1']:.4f}, the TF-IDF companion alone "
                      f"{valid['tfidf_alone.macro_f1']:.4f}."
                      + (" **The TF-IDF companion alone is ahead of the model alone on valid.**"
                         if valid["tfidf_alone.macro_f1"] > valid["model_alone.macro_f1"] else "")]
        lines += ["", "### Per class (test)", ""]
        lines += table(["label", "precision", "recall", "F1", "support"],
                       [[label, f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"]]
                        for label, c in zip(self.labels, r["per_class"])])
        lines += ["", "### Confusion matrix (rows: gold, columns: predicted)", ""]
        lines += table(["", *self.labels], [[f"**{label}**", *row] for label, row in zip(self.labels, r["confusion"])])
        cm = confusion_matrix_plot(r["confusion"], self.labels, run_dir / "plots" / "confusion_matrix.png")
        lines += ["", f"![confusion matrix](plots/{cm.name})", "", "### What the model attended to", ""]
        n = self.cfg.report.examples
        right = [i for i in range(len(gold)) if gold[i] == pred[i]][: (n + 1) // 2]
        wrong = [i for i in range(len(gold)) if gold[i] != pred[i]][: n // 2]
        lines += self.shaded_examples(right + wrong, gold, pred, probs, weights, run_dir)
        if self.arch.reads_sentences:
            lines += self.document_attention(model, right + wrong, gold, pred, run_dir)
        return ["\n".join(lines)]

    def shaded_examples(self, indices, gold, pred, probs, weights, run_dir: Path) -> list[str]:
        """Test examples' tokens shaded by attention: a PNG (long texts cut) and every token as HTML."""
        rows, parts = [], []
        for i in indices:
            tokens = [self.tok.id_to_piece(t) for t in self.datasets["test"][i][0]]
            caption = (f"{'correct' if gold[i] == pred[i] else 'WRONG'}: gold {self.labels[gold[i]]}, predicted "
                       f"{self.labels[pred[i]]} (p={max(probs[i]):.2f})")
            cut = min(len(tokens), PNG_TOKENS)
            rows.append((tokens[:cut], weights[i][:cut],
                         caption + (f" -- first {cut} of {len(tokens)} tokens" if cut < len(tokens) else "")))
            parts.append(shade_tokens_html(tokens, weights[i], caption))
        if not rows:
            return []
        png = shade_tokens_png(rows, run_dir / "plots" / "attention_tokens.png")
        (run_dir / "attention_tokens.html").write_text(
            "<html><meta charset='utf-8'><body style='font-family: sans-serif'>"
            f"<h3>{html.escape(self.cfg.model.arch)}: tokens shaded by attention</h3>" + "".join(parts)
            + "</body></html>", encoding="utf-8")
        return [f"![attention over tokens](plots/{png.name})", "", "The same as HTML: `attention_tokens.html`."]

    def document_attention(self, model, indices, gold, pred, run_dir: Path) -> list[str]:
        """The hierarchical model's two levels: which sentences it read, and which words in them."""
        model = self.neural(model)
        han = model.members[0] if isinstance(model, Ensemble) else model
        lines = ["", "### Document-level attention (hierarchical model)", "",
                 "Each test document's sentences by the attention they got (sentence level), with the most-"
                 "attended words inside each (word level)"
                 + (" -- the first of the ensemble's members" if isinstance(model, Ensemble) else "") + ".", ""]
        parts = []
        for i in indices:
            ids = self.datasets["test"][i][0]
            with torch.no_grad():
                out = han.explain(torch.tensor([ids], device=self.device), torch.tensor([len(ids)], device=self.device))
            sent_w, word_w, where = out["sentence_weights"][0], out["word_weights"][0], out["where"][0]
            sentences = [[] for _ in range(int(out["sentences"][0]))]
            for t, (s_i, w_i) in zip(ids, where.tolist()):
                if s_i >= 0:
                    sentences[s_i].append((self.tok.id_to_piece(t), float(word_w[s_i, w_i])))
            verdict = "correct" if gold[i] == pred[i] else "WRONG"
            lines.append(f"**{verdict}**: gold {self.labels[gold[i]]}, predicted {self.labels[pred[i]]}; "
                         f"{len(sentences)} sentences, the three most attended:")
            lines.append("")
            for s_i in sent_w[: len(sentences)].argsort(descending=True)[:3].tolist():
                words = sentences[s_i]
                top = sorted(range(len(words)), key=lambda k: -words[k][1])[:3]
                text = " ".join(f"**{w}**" if k in top else w for k, (w, _) in enumerate(words))
                lines.append(f"- sentence {s_i + 1} (weight {float(sent_w[s_i]):.2f}): {text}")
            lines.append("")
            rows = "".join(
                f'<div style="border-left: 8px solid rgba(0,90,255,{float(sent_w[k]) / float(sent_w.max()):.3f}); '
                f'padding-left: 6px; margin: 2px 0" title="sentence weight {float(sent_w[k]):.3f}">'
                + shade_tokens_html([w for w, _ in words], [a for _, a in words]) + "</div>"
                for k, words in enumerate(sentences))
            parts.append(f"<h4>{verdict}: gold {html.escape(self.labels[gold[i]])}, predicted "
                         f"{html.escape(self.labels[pred[i]])}</h4>{rows}")
        (run_dir / "attention_documents.html").write_text(
            "<html><meta charset='utf-8'><body style='font-family: sans-serif'><h3>Hierarchical attention: "
            "sentences (blue bar: sentence weight) and words (orange: word weight within the sentence)</h3>"
            + "".join(parts) + "</body></html>", encoding="utf-8")
        lines.append("Every sentence and word, shaded: `attention_documents.html`.")
        return lines

    def count_tokens(self, text):
        return len(self.tok.encode(text))

    @torch.no_grad()
    def infer(self, model, inputs, options):
        """Texts -> the predicted label with its probabilities and the attention over the tokens: the
        weights the classifier pooled with, then every attention module's heads (per hop)."""
        return self.explain_ids(model, [self.encode(t) or [self.tok.unk_id] for t in inputs],
                                titles=[t[:120] for t in inputs])

    def explore(self, model, results, n):
        gold, pred = results["test"]["gold"], results["test"]["pred"]
        right = [i for i in range(len(gold)) if gold[i] == pred[i]]
        wrong = [i for i in range(len(gold)) if gold[i] != pred[i]]
        k_right = min(len(right), n - min(len(wrong), n // 2))  # half and half, or as many as there are
        picked = sorted(right[:k_right] + wrong[: n - k_right])
        examples = self.explain_ids(model, [self.datasets["test"][i][0] for i in picked],
                                    titles=[f"test {i}" for i in picked])
        for ex, i in zip(examples, picked):
            ex["label"]["gold"] = self.labels[gold[i]]
            ex["title"] += " · " + ("right" if gold[i] == pred[i] else "wrong")
        return examples

    def explain_ids(self, model, ids: list[list[int]], titles: list[str]) -> list[dict]:
        x, lengths = pad_batch(ids)  # (batch, len)
        x, lengths = x.to(self.device), lengths.to(self.device)
        n_max, han = x.size(1), self.arch.reads_sentences and isinstance(model, nn.Module)  # (ONNX: no parts)
        hops = max(1, getattr(self.cfg.model, "hops", 1))
        with record(model) as maps:
            logits, w = model(x, lengths)  # (batch, outputs), (batch, len)
        probs = self.probabilities(logits)
        if han:
            inner = self.neural(model)
            inner = inner.members[0] if isinstance(inner, Ensemble) else inner
            parts = inner.explain(x, lengths)

        def route(name, weights):  # (batch, heads, q, k) -> which sequences; the HAN's are per sentence
            q, k = weights.shape[-2:]
            if han or k not in (n_max, n_max + 1):
                return None
            keys = "tokens" if k == n_max else "cls_tokens"
            return (keys, keys) if q == k else ("hops", keys) if q == hops else None

        out = []
        for i, row in enumerate(ids):
            tokens = [self.tok.id_to_piece(t) for t in row]
            k = int(probs[i].argmax())
            seqs = {"decision": [self.labels[k]], "tokens": tokens, "cls_tokens": ["[CLS]"] + tokens,
                    "hops": [f"hop {h + 1}" for h in range(hops)]}
            views = [view("token weights the classifier pooled with", "decision", "tokens", w[i, : len(row)][None])]
            if han:
                where = parts["where"][i, : len(row)]  # (len, 2): sentence, word (-1: separator)
                inside = torch.where(where[:, 0] >= 0, parts["word_weights"][i][where[:, 0], where[:, 1]], 0.0)
                views.append(view("word attention within each sentence", "decision", "tokens", inside[None]))
            views += recorded_views(maps, i, seqs, route)
            used = {v["q"] for v in views} | {v["k"] for v in views}
            out.append(example({s: t for s, t in seqs.items() if s in used}, views, title=titles[i],
                               text=self.labels[k], label={"pred": self.labels[k], "probs": {
                                   lab: round(float(p), 4) for lab, p in zip(self.labels, probs[i])}}))
        return out

    def export_inputs(self, model, batch: int, length: int, generator):
        """ONNX export (:mod:`attnapps.export.graphs`): random token ids and lengths, as ``forward`` reads them."""
        ids, lengths = random_ids(batch, length, self.tok.vocab_size, generator, self.tok.pad_id)
        return ExampleInputs({"ids": ids, "lengths": lengths})

    def predict(self, model, options):
        text = read_input(options.input)
        for line in text.splitlines():
            if not line.strip():
                print()
                continue
            ids = self.encode(line)
            logits, w = model(torch.tensor([ids], device=self.device), torch.tensor([len(ids)], device=self.device))
            p = self.probabilities(logits)[0]
            k = int(p.argmax())
            top = w[0].topk(min(options.top, len(ids))).indices.tolist()
            words = ", ".join(self.tok.id_to_piece(ids[i]) for i in top)
            print(f"{self.labels[k]}\t{float(p[k]):.4f}\t{words}")

