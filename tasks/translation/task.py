"""``task=translation``: train an attention encoder-decoder, translate the test set with beam search,
score it with sacreBLEU and chrF, and report alignments.

    python -m attnapps.run task=translation [model.arch=transformer] [model.attention=dot] [data.path=DIR]
    python -m attnapps.predict task=translation run=RUN_DIR [input=FILE] [output=FILE] [beam=5] [plot_dir=DIR]
"""

from __future__ import annotations

import random
import time
from array import array
import zlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from omegaconf import OmegaConf

from attnapps.config import arch_config, arch_keys, check_heads
from attnapps.data import fit_tokenizer, hub, pad_batch, scripts, tokenizer_from_state
from attnapps.data.files import ErrorPolicy, read_input, write_output
from attnapps.data.prepared import Chain, Table
from attnapps.decoding import decode_batches, length_penalty
from attnapps.export.graphs import ExampleInputs, random_ids
from attnapps.errors import ConfigError, DataError
from attnapps.attention import record
from attnapps.explorer import encoder_decoder_route, example, forced_views, view
from attnapps.losses import sequence_loss
from attnapps.metrics import bleu_tokenizer, check_bleu_tokenizer, sacrebleu_scores
from attnapps.plots import attention_heatmap
from attnapps.predict import predict_options
from attnapps.report import section, table
from attnapps.task import Diagnoser, Evaluation, Explainer, Reporter, Task, register_task, windows

from . import diagnostics, outputs
from .config import TranslationConfig, TranslationPredict
from .data import load_extra_tests, split_files, stream_pairs, target_language
from .augment import Augmenter, dictionary_pairs
from . import hybrid
from .baseline import translate_with_table, word_by_word
from .lexicon import WordChannel, fit_ibm1, fit_word_channel, lexicon_weight
from .model import ARCHS

BYTE_FALLBACK_MIN_VOCAB = 1024  # tokenizer.byte_fallback from this vocabulary size on
SPLITS = ("train", "valid", "test")
ENCODE_BATCH = 10000  # sentences encoded at once (on all threads) while preparing the data
LANGUAGE_SAMPLE = 2000  # training targets whose scripts say the language (and whether it is written unspaced)
EMBEDDED_NAMES = {"en-de": "embedded en-de (Ding dictionary)", "en-zh": "embedded en-zh (GNOME/GIMP/Inkscape strings)"}


@dataclass
class TranslationState:
    """What a trained translation model needs besides its weights: the subword tokenizers of the source
    and the target (one object when ``tokenizer.joint``), and with ``model.lexicon`` the IBM Model 1
    lexicon fitted on the training pieces (:mod:`.lexicon`)."""

    src_tok: Any
    tgt_tok: Any
    lexicon: dict | None = None
    channel: dict | None = None  # decode.channel's word lexicon, target -> source (.lexicon.fit_word_channel)
    hybrid: dict | None = None  # decode.hybrid's choice on valid: {"weights", "table", "valid"} (.hybrid)

    @classmethod
    def fit(cls, sources: Sequence[str], targets: Sequence[str], t) -> "TranslationState":
        """sentencepiece on the training pairs' sides (``t``: the tokenizer section), jointly or per side;
        read by position (a stored column is never copied whole)."""
        # byte pieces only where they leave room: 256 of a vocabulary under 1024 would crowd out the words
        byte_fallback = bool(t.byte_fallback) and t.vocab_size >= BYTE_FALLBACK_MIN_VOCAB
        fit = lambda texts: fit_tokenizer("sentencepiece", texts, t.vocab_size, t.model_type,  # noqa: E731
                                          byte_fallback=byte_fallback)
        if t.joint:
            joint = fit(Chain(sources, targets))
            return cls(joint, joint)
        return cls(fit(sources), fit(targets))

    def to_dict(self) -> dict:
        state = {"src_tokenizer": self.src_tok.state_dict()}
        if self.tgt_tok is not self.src_tok:
            state["tgt_tokenizer"] = self.tgt_tok.state_dict()
        for key in ("lexicon", "channel", "hybrid"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @classmethod
    def from_dict(cls, state: dict) -> "TranslationState":
        src = tokenizer_from_state(state["src_tokenizer"])
        return cls(src, tokenizer_from_state(state["tgt_tokenizer"]) if "tgt_tokenizer" in state else src,
                   state.get("lexicon"), state.get("channel"), state.get("hybrid"))


@register_task("translation")
class TranslationTask(Task, Reporter, Explainer, Diagnoser):
    metric_keys, run_files = outputs.METRIC_KEYS, outputs.RUN_FILES  # what a run writes (attnapps.outputs)
    default = True  # `python -m attnapps.run` with no task= trains this one (the README's main job)
    config_class, state_class = TranslationConfig, TranslationState
    aliases = {"tokenizer": "tokenizer.kind"}  # `tokenizer=X` is short for `tokenizer.kind=X`
    hub_keys = ("data.src_lang", "data.tgt_lang")  # which side of a data.hf= dataset is which
    list_keys = ("data.extra_test",)  # `data.extra_test=A,B`: one string of test sets, not a Hydra sweep
    # runs saved before a key load as they were trained and decoded
    introduced = {"model.lexicon": False, "decode.lexicon_weight": 1.0, "decode.channel": 0.0,
                  "tokenizer.byte_fallback": False, "augment.fragments": 0.0, "augment.passthrough": 0.0,
                  "augment.shape": 0.0, "decode.hybrid": False, "decode.protect": False}
    renamed = {"decode.samples": "report.examples", "decode.plots": "report.figures"}  # old names, for one release
    predict_config_class = TranslationPredict
    primary_metric = "bleu"
    higher_is_better = True
    count_unit = "tokens"
    # attnapps.study: a quick look that learns something (BLEU 0.54 vs the copy's 0.12 at 200 updates, README),
    # at the model's own translations (the study compares attention, not the hybrid with word by word)
    study_presets = {"quick": ["trainer.max_steps=200", "trainer.warmup_steps=20", "decode.valid_subset=100",
                               "decode.beam=2", "report.baseline=false", "decode.hybrid=false"]}
    secondary_metrics, study_figure = ("chrf",), "alignment_0.png"  # what attnapps.study shows of this task
    study_uses = {"copy": ["model.copy=true"]}  # the study's translation+copy: attention as a copy distribution
    filtered, skipped, extra_tests, lexicon_seconds, augmenter = 0, None, None, 0.0, None  # set by build_data
    _channel = None  # (state.channel, its WordChannel): channel_rescore's cache
    _base = None  # word_by_word()'s result, made once (the hybrid's candidate and the report's baseline)
    src_tok = property(lambda self: self.state.src_tok if self.state else None)
    tgt_tok = property(lambda self: self.state.tgt_tok if self.state else None)

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        check_heads(cfg.model, cfg.model.hidden_size, "model.hidden_size")

    # ------------------------------------------------------------------ data
    def metric_language(self, targets: list[str]) -> tuple[str, str]:
        """sacreBLEU's tokenizer for the target language and how the language was known: ``data.tgt_lang``
        (``data.src_lang`` when reversed), the file names, the embedded dataset, or the target text's script.
        A tokenizer that cannot be loaded here (``ja-mecab`` without the ``ja`` extra) stops the run now."""
        d = self.cfg.data
        lang, how = target_language(d.path, d.embedded, d.src_lang, d.tgt_lang, d.reverse, targets)
        name = bleu_tokenizer(lang, self.cfg.decode.bleu_tokenize)
        problem = check_bleu_tokenizer(name)
        if problem:
            raise ConfigError(f"decode.bleu_tokenize={self.cfg.decode.bleu_tokenize} (target language "
                              f"{lang or 'unknown'}): {problem}, or set decode.bleu_tokenize=char")
        note = (f"target language {lang or 'not known'} (from {how}); BLEU tokenizer {name}"
                + (" as set by decode.bleu_tokenize" if self.cfg.decode.bleu_tokenize != "auto" else
                   " (as `sacrebleu -l xx-" + (lang or "xx") + "` picks it)"))
        return name, note

    def build_data(self):
        """The splits as :class:`~attnapps.data.prepared.Table` s of ``(source ids, target ids)`` over the
        prepared store (:meth:`prepare_data`, built once per data and options, read by position), the texts
        as lazy columns (``self.sources`` / ``self.refs``)."""
        d, t = self.cfg.data, self.cfg.tokenizer
        _, files = split_files(d.path, d.src_lang, d.tgt_lang, d.embedded)
        options = {"src_lang": d.src_lang, "tgt_lang": d.tgt_lang, "reverse": bool(d.reverse), "on_error": d.on_error,
                   "max_len": d.max_len, "tokenizer": OmegaConf.to_container(t, resolve=True, enum_to_str=True),
                   "carve_seed": None if "valid" in files else self.cfg.seed}  # a valid split cut from train
        # (the lexicons are not in the key: a store built without one a run needs gets it fitted in that run)
        given = self.state is not None  # a checkpoint's state (resume, predict) stays as it was saved
        store = self.prepared([f for group in files.values() for f in group], options, self.prepare_data,
                              d.cache_dir)
        if not given:  # the store's state may hold a lexicon fitted for an earlier run's options: only what this
            self.state.lexicon = self.state.lexicon if self.cfg.model.lexicon else None  # run's options use
            self.state.channel = self.state.channel if self.needs_channel else None
        notes = store.notes
        self.filtered = notes["filtered"]
        self.skipped = ErrorPolicy(d.on_error)
        self.skipped.skipped, self.skipped.examples = notes["skipped"], list(notes["skip_examples"])
        data = {split: Table(store.column(f"{split}.src"), store.column(f"{split}.tgt")) for split in SPLITS}
        self.stored_lengths = {split: store.column(f"{split}.len") for split in SPLITS}
        self.sources = {split: store.column(f"{split}.source") for split in SPLITS}
        self.refs = {split: store.column(f"{split}.target") for split in SPLITS}
        self.bleu_tokenize, self.lang_note = self.metric_language(self.refs["train"][:LANGUAGE_SAMPLE])
        train = Table(self.sources["train"], self.refs["train"])
        self.fit_from_training_data(data["train"], train)  # what the store's state lacks (a checkpoint's)
        a = self.cfg.augment
        if a.fragments + a.passthrough + a.shape > 0:  # the training pairs' own dictionary: the same on resume
            started = time.perf_counter()
            target_words = self.target_words(self.unspaced(self.refs["train"][:LANGUAGE_SAMPLE]))
            pairs = dictionary_pairs(list(train), scripts.split_words, target_words, scripts.join_words) \
                if a.fragments else []
            self.augmenter = Augmenter(pairs, a.fragments, a.passthrough, a.shape)
            self.lexicon_seconds += time.perf_counter() - started
        self.extra_tests = load_extra_tests(d.extra_test, d.src_lang, d.tgt_lang, self.skipped, d.reverse)
        return data

    @property
    def needs_channel(self) -> bool:
        return self.cfg.decode.channel > 0 or bool(self.cfg.decode.hybrid)

    def prepare_data(self, writer) -> None:
        """Stream the pairs (:func:`.data.stream_pairs`) into the store's text columns as they are read, fit
        the tokenizers on the stored training text (unless a checkpoint gave them; sentencepiece reads at
        most a fixed sample of it), encode every split in batches on all CPU threads -- dropping training
        pairs longer than ``data.max_len`` -- and fit the lexicons on the encoded training pairs
        (:meth:`fit_from_training_data`). The corpus is never held in memory: each step reads the columns
        the one before wrote."""
        d, t = self.cfg.data, self.cfg.tokenizer
        directory, streams, policy = stream_pairs(d.path, d.src_lang, d.tgt_lang, d.on_error, self.cfg.seed,
                                                  d.reverse, d.embedded)
        texts = {}
        for split, stream in streams.items():
            sources, targets = writer.column(f"{split}.source", text=True), writer.column(f"{split}.target", text=True)
            for s, g in stream():
                sources.add(s)
                targets.add(g)
            n = sources.close()
            targets.close()
            if n == 0:
                raise DataError(directory, None, f"the {split} split has no usable pairs")
            texts[split] = Table(writer.read(f"{split}.source"), writer.read(f"{split}.target"))
        train = texts["train"]
        self.fitted(lambda: TranslationState.fit(*train.columns, t))  # or the checkpoint's tokenizers
        filtered = 0
        for split, pairs in texts.items():
            src_col = writer.column(f"{split}.src", self.src_tok.vocab_size)
            tgt_col = writer.column(f"{split}.tgt", self.tgt_tok.vocab_size)
            longer = array("i")  # max(source, target) + 1 per kept pair: what batching sorts by
            for start in range(0, len(pairs), ENCODE_BATCH):
                sources, targets = pairs.columns[0][start:start + ENCODE_BATCH], pairs.columns[1][start:start + ENCODE_BATCH]
                for s, g in zip(self.src_tok.encode_batch(sources), self.tgt_tok.encode_batch(targets)):
                    if split == "train" and not (0 < len(s) <= d.max_len and 0 < len(g) <= d.max_len):
                        filtered += 1
                        continue
                    src_col.add(s)
                    tgt_col.add(g)
                    longer.append(max(len(s), len(g)) + 1)
            src_col.close(), tgt_col.close()
            writer.array(f"{split}.len", np.frombuffer(longer, dtype=np.int32))
        writer.notes.update(filtered=filtered, skipped=policy.skipped, skip_examples=policy.examples)
        self.fit_from_training_data(Table(writer.read("train.src"), writer.read("train.tgt")), train)

    def fit_from_training_data(self, encoded: Sequence, train: Sequence) -> None:
        """The state's pieces fitted on the training pairs, where the config needs them and the state (the
        store's, or a checkpoint's) lacks them: ``model.lexicon``'s IBM Model 1 over the pieces, the noisy
        channel's word lexicon (``decode.channel`` / ``decode.hybrid``)."""
        if self.cfg.model.lexicon and self.state.lexicon is None:  # fitted once; a resumed run keeps its own
            started = time.perf_counter()
            self.state.lexicon = fit_ibm1(encoded, self.src_tok.vocab_size, self.tgt_tok.vocab_size,
                                          null_id=self.src_tok.pad_id)
            self.lexicon_seconds += time.perf_counter() - started
        if self.needs_channel and self.state.channel is None:  # fitted once
            started = time.perf_counter()
            self.state.channel = self.fit_channel(train)
            self.lexicon_seconds += time.perf_counter() - started

    def write_hub(self, datasets, columns, folder):
        """``data.hf=``: each split as line-aligned ``{split}.<src>`` / ``{split}.<tgt>`` files. The sides:
        ``data.hf_columns=src=COL,tgt=COL``; else a translation column's languages (``data.src_lang`` /
        ``data.tgt_lang``, or English as the source when present); else the dataset's two text columns."""
        d, train = self.cfg.data, datasets["train"]
        if "src" in columns or "tgt" in columns:
            if not ("src" in columns and "tgt" in columns):
                raise ConfigError("data.hf_columns: name both sides, src=COLUMN,tgt=COLUMN")
            sides = (columns["src"], columns["tgt"])
            langs = (d.src_lang or sides[0].rsplit(".", 1)[-1], d.tgt_lang or sides[1].rsplit(".", 1)[-1])
        else:
            def pick(options):  # (source, target) among the languages found
                src = d.src_lang or ("en" if "en" in options else options[0])
                tgt = d.tgt_lang or next((o for o in options if o != src), "")
                if src not in options or tgt not in options:
                    raise ConfigError(f"data.src_lang/data.tgt_lang: {d.hf} has the languages {', '.join(options)}")
                return src, tgt

            nested = [c for c in hub.columns_of(train) if "." in c]
            text = [name for name, f in train.features.items() if getattr(f, "dtype", "") in ("string", "large_string")]
            if nested:
                parent = nested[0].split(".")[0]
                langs = pick([c.split(".", 1)[1] for c in nested if c.startswith(parent + ".")])
                sides = tuple(f"{parent}.{lang}" for lang in langs)
            elif len(text) == 2 or (d.src_lang in text and d.tgt_lang in text):
                langs = sides = pick(text)
            else:
                raise ConfigError(f"data.hf={d.hf}: say which columns are the sides with data.hf_columns=src=COLUMN,"
                                  f"tgt=COLUMN (it has {', '.join(hub.columns_of(train))})")
        langs = tuple(hub.safe_name(x) for x in langs)
        if langs[0] == langs[1]:
            langs = ("src", "tgt")
        for split, dataset in datasets.items():
            with open(folder / f"{split}.{langs[0]}", "w", encoding="utf-8") as fs, \
                    open(folder / f"{split}.{langs[1]}", "w", encoding="utf-8") as ft:
                for row in hub.rows(dataset, {"src": sides[0], "tgt": sides[1]}, d.hf):
                    fs.write(hub.text_line(row["src"]) + "\n")
                    ft.write(hub.text_line(row["tgt"]) + "\n")
        return {"src_lang": langs[0], "tgt_lang": langs[1]}

    def lengths(self, split):
        """``(n,)``: the longer side of each pair plus its ``<bos>``/``<eos>``, stored when the data was
        prepared (4 bytes a pair: no sequence is read)."""
        return self.stored_lengths[split]

    def collate(self, examples):
        bos, eos = self.tgt_tok.bos_id, self.tgt_tok.eos_id
        src, src_len = pad_batch([s for s, _ in examples])  # (batch, src_len)
        tgt_in, _ = pad_batch([[bos] + t for _, t in examples])  # (batch, tgt_len + 1)
        tgt_out, _ = pad_batch([t + [eos] for _, t in examples])
        return {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}

    def train_collate(self, examples):
        """A training batch: some pairs replaced by ``augment.*`` pairs (:mod:`.augment`) -- a replacement
        longer than the batch's longest sentence is not made, so the padding (and the step's time) stays
        as it was -- and with ``tokenizer.sampling`` > 0 each sentence re-segmented at random; both seeded
        by the batch itself, so a resumed run draws what the uninterrupted one drew. Otherwise
        :meth:`collate`."""
        aug, alpha = self.augmenter, self.cfg.tokenizer.sampling
        aug = aug if aug is not None and aug.active else None
        if aug is None and alpha <= 0:
            return self.collate(examples)
        seed = zlib.crc32(repr((self.cfg.seed, examples)).encode()) & 0x7FFFFFFF
        src, tgt = self.src_tok, self.tgt_tok
        if aug is not None:
            rng = random.Random(seed)
            longest = (max(len(s) for s, _ in examples), max(len(t) for _, t in examples))  # the padded widths
            made = []
            for s, t in examples:
                kind = aug.draw(rng)
                if kind is not None:
                    a, b = aug.make(kind, src.decode(s), tgt.decode(t), rng)
                    a, b = src.encode(a), tgt.encode(b)
                    s, t = (a, b) if a and b and len(a) <= longest[0] and len(b) <= longest[1] else (s, t)
                made.append((s, t))
            examples = made
        if alpha > 0:
            examples = [(src.sample(src.decode(s), alpha, seed + 2 * i) or s,
                         tgt.sample(tgt.decode(t), alpha, seed + 2 * i + 1) or t)
                        for i, (s, t) in enumerate(examples)]
        return self.collate(examples)

    # ------------------------------------------------------------------ model and loss
    def build_model(self):
        model = ARCHS[str(self.cfg.model.arch)]
        return model(arch_config(self.cfg.model, model.config_class), self.src_tok.vocab_size,
                     self.tgt_tok.vocab_size, shared_vocab=self.src_tok is self.tgt_tok, copy_map=self.copy_map(),
                     lexicon=self.state.lexicon)

    def copy_map(self) -> torch.Tensor | None:
        """With ``model.copy`` and separate vocabularies: each source piece's id in the target vocabulary
        (``<unk>`` where it has none). None = the identity (a joint vocabulary, or no copying)."""
        if not self.cfg.model["copy"] or self.src_tok is self.tgt_tok:  # ["copy"]: .copy is DictConfig's method
            return None
        src, tgt = self.src_tok, self.tgt_tok
        return torch.tensor([tgt.piece_to_id(src.id_to_piece(i)) for i in range(src.vocab_size)])

    def loss(self, model, batch):
        # logits (batch, tgt_len, vocab); log-probabilities where the output layer reads the attention (the
        # lexicon, the copy mixture), which the loss then reads as they are. ``model``: DDP's wrapper under
        # torchrun; a model of another kind (scripts/bench_translation.py's reference) gives logits
        out = model(batch["src"], batch["src_len"], batch["tgt_in"])
        log_probs = getattr(getattr(model, "module", model), "reads_weights", False)
        return sequence_loss(out, batch["tgt_out"], self.tgt_tok.pad_id, self.cfg.model.label_smoothing,
                             log_probs=log_probs)

    # ------------------------------------------------------------------ evaluation
    def translate(self, model, sources: list[list[int]], beam: int = 1, alpha: float = 0.6, n_best: int = 1,
                  attention: bool = True, options=None, pool: dict | None = None, texts: list[str] | None = None):
        """Token ids -> Hypotheses in input order (batches sorted by length), with their attention
        (:func:`attnapps.decoding.step_attention`) unless ``attention=False``. ``options`` (default: the
        run's ``decode``) give the lexicon's weight, the noisy-channel weight of the re-ranking and whether
        the hybrid decides. ``texts``: the sources as given, for the word-level models (the word-by-word
        candidate copies an unknown string as it was written, not as its ``<unk>`` pieces decode); default:
        the ids decoded. ``pool``: see :meth:`hybrid_rescore`."""
        dec = self.cfg.decode
        options = dec if options is None else options

        def inputs(chunk):
            src, src_len = pad_batch([s or [self.src_tok.unk_id] for s in chunk])  # (batch, src_len)
            src, src_len = src.to(self.device), src_len.to(self.device)
            return {"src": src, "src_len": src_len}, (src_len.float() * dec.max_len_ratio + dec.max_len_add).long()

        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        rescore, candidates = self.channel_rescore(alpha, options.channel), None
        # the hybrid's candidate is scored by forcing it through the model: an ONNX export has no such pass
        hybrid = self.state.hybrid if options.hybrid and beam > 1 and isinstance(model, nn.Module) else None
        if pool is not None or hybrid is not None:
            given = {id(s): t for s, t in zip(sources, texts)} if texts is not None else {}
            text_of = lambda ids: given.get(id(ids)) or self.src_tok.decode(ids)  # noqa: E731
            rescore = self.hybrid_rescore(alpha, None if pool is not None else hybrid["weights"], pool, text_of)
            candidates = self.word_by_word_candidates(model, hybrid["table"] if hybrid else self.word_by_word()["table"],
                                                      text_of, options.protect)
        with lexicon_weight(model, options.lexicon_weight):
            return decode_batches(model, sources, inputs, self.tgt_tok.bos_id, self.tgt_tok.eos_id, beam, alpha,
                                  n_best, order=order, device=self.device, attention=attention,
                                  rescore=rescore, candidates=candidates, options=options)

    def word_channel(self):
        """The channel lexicon as a :class:`.lexicon.WordChannel` (made once) and the target's word cutter."""
        if self._channel is None or self._channel[0] is not self.state.channel:
            self._channel = (self.state.channel, WordChannel(self.state.channel))
        return self._channel[1], self.target_words(self.state.channel["unspaced"])

    def word_by_word_candidates(self, model, table: dict, text_of, protect: bool = False):
        """``decode_batches``' ``candidates``: each source's word-by-word translation (``table``, the
        baseline's choice; ``text_of(ids)``: the source's text; ``protect``: code-like tokens copied whole,
        ``decode.protect``) with its log-probability under the model, forced through the decoder."""
        src_tok, tgt_tok = self.src_tok, self.tgt_tok

        @torch.no_grad()
        def candidates(chunk: list[list[int]]) -> list[list[tuple[list[int], float]]]:
            outs = [tgt_tok.encode(translate_with_table(table, text_of(s), protect)) for s in chunk]
            src, src_len = pad_batch([s or [src_tok.unk_id] for s in chunk])  # (batch, src_len)
            tgt_in, _ = pad_batch([[tgt_tok.bos_id] + o for o in outs])  # (batch, len + 1)
            tgt_out, _ = pad_batch([o + [tgt_tok.eos_id] for o in outs])
            logits = model(src.to(self.device), src_len.to(self.device), tgt_in.to(self.device))  # (batch, len+1, V)
            logp = torch.log_softmax(logits.float(), -1).gather(-1, tgt_out.to(self.device).unsqueeze(-1)).squeeze(-1)
            totals = logp.masked_fill(tgt_out.to(self.device) == tgt_tok.pad_id, 0.0).sum(1)  # (batch,)
            return [[(o, float(t))] for o, t in zip(outs, totals)]
        return candidates

    def hybrid_rescore(self, alpha: float, weights, pool: dict | None, text_of):
        """``decode.hybrid``: the score of each candidate -- the beam's finished hypotheses and, last, the
        word-by-word translation -- ``weights`` . :func:`.hybrid.features`. ``pool`` (a dict, when tuning):
        each source's features and candidate texts are kept in it by ``id(source)``, and the score is the
        model's alone. ``text_of(ids)``: the source's text."""
        channel, target_words = self.word_channel()
        known = set(self.state.channel["source"])
        weights = None if weights is None else np.asarray(weights, dtype=float)

        def rescore(source: list[int], finished: list[tuple[list[int], float]]) -> list[float]:
            texts = [self.tgt_tok.decode(tokens) for tokens, _ in finished]
            words = [target_words(t) for t in texts]
            source_words = scripts.split_words(text_of(source))
            logp = channel.log_probs(source_words, words).tolist()
            feats = hybrid.features([sc for _, sc in finished], [len(t) for t, _ in finished], logp, words,
                                    source_words, known, alpha, len(finished) - 1)
            if pool is not None:
                pool[id(source)] = (feats, texts)
                return feats[:, 0].tolist()
            return (feats @ weights).tolist()
        return rescore

    def channel_rescore(self, alpha: float, weight: float):
        """``decode.channel`` > 0: the re-ranking score of a source's finished hypotheses, the search's own
        ``log P(y | x) / lp(|y| + 1)`` plus ``weight * log P(x | y)`` under the word-level IBM Model 1
        fitted target -> source (:class:`.lexicon.WordChannel`): a noisy channel that prefers the
        hypotheses whose words account for every source word."""
        if weight <= 0:
            return None
        if self.state.channel is None:
            raise ConfigError(f"decode.channel={weight}: this run has no channel lexicon (it was trained with "
                              "decode.channel=0); set channel=0")
        channel, target_words = self.word_channel()

        def rescore(source: list[int], finished: list[tuple[list[int], float]]) -> list[float]:
            words = [target_words(self.tgt_tok.decode(tokens)) for tokens, _ in finished]
            logp = channel.log_probs(scripts.split_words(self.src_tok.decode(source)), words)
            return [score / float(length_penalty(torch.tensor(len(tokens) + 1), alpha)) + weight * float(c)
                    for (tokens, score), c in zip(finished, logp)]
        return rescore

    def evaluate(self, model, split, final=False):
        """Greedy on ``decode.valid_subset`` sentences during training; the final evaluation decodes the
        whole split as ``decode`` says. With ``decode.hybrid`` the final valid evaluation also chooses the
        hybrid's weights (:mod:`.hybrid`) -- kept in the task state, so test, predict and the server
        decode with them -- and both report how often the word-by-word translation was chosen."""
        dec = self.cfg.decode
        n = len(self.datasets[split]) if final else min(dec.valid_subset, len(self.datasets[split]))
        metrics = {}
        if final and split == "valid" and dec.hybrid and dec.beam > 1:  # one decoding: the pool, then the choice
            sources, given = [s for s, _ in self.datasets[split][:n]], self.sources[split][:n]
            pool: dict = {}
            self.translate(model, sources, dec.beam, dec.alpha, attention=False, pool=pool, texts=given)
            feats, cands = zip(*(pool[id(s)] for s in sources))
            weights, chosen = hybrid.tune(list(feats), list(cands), self.refs[split][:n], self.bleu_tokenize)
            self.state.hybrid = {"weights": weights.tolist(), "table": self.word_by_word()["table"], "valid": chosen}
            texts = [c[k] for c, k in zip(cands, hybrid.choose(list(feats), weights))]
            metrics["word_by_word_share"] = chosen["share"]
            written = False
        else:  # window by window: the sources read from the store, the hypotheses written as they come
            texts, same = [], 0
            with self.output_lines(f"{split}_hypotheses.txt" if final and split == "test" else "") as out:
                for part in windows(n):
                    sources = [s for s, _ in self.datasets[split][part.start:part.stop]]
                    given = self.sources[split][part.start:part.stop]
                    hyps = self.translate(model, sources, dec.beam if final else 1, dec.alpha, attention=False,
                                          texts=given)  # words only
                    new = [self.tgt_tok.decode(h) for h in hyps.tokens]
                    out.write(new)
                    texts += new
                    if final and dec.hybrid and self.state.hybrid is not None and dec.beam > 1:
                        same += self.word_by_word_count(hyps.tokens, given)
                written = out.written
            if final and dec.hybrid and self.state.hybrid is not None and dec.beam > 1:
                metrics["word_by_word_share"] = same / max(n, 1)
        scores = sacrebleu_scores(texts, self.refs[split][:n], self.bleu_tokenize)
        return Evaluation({"bleu": scores["bleu"], "chrf": scores["chrf"], **metrics},
                          {"texts": texts, "scores": scores, "written": written})

    def word_by_word_share(self, outputs: list[list[int]], sources: list[str]) -> float:
        """The part of ``outputs`` that are the word-by-word translation of their source (the hybrid's
        choice)."""
        return self.word_by_word_count(outputs, sources) / max(len(outputs), 1)

    def word_by_word_count(self, outputs: list[list[int]], sources: list[str]) -> int:
        """How many of ``outputs`` are the word-by-word translation of their source."""
        table, protect = self.state.hybrid["table"], self.cfg.decode.protect
        return sum(o == self.tgt_tok.encode(translate_with_table(table, s, protect)) for o, s in zip(outputs, sources))

    def extra_metrics(self, model):
        """``data.extra_test``: each further test set translated as the test split (``decode.beam``) and
        scored: ``test.<name>.bleu``, ``test.<name>.chrf`` (the copy baseline's as ``trivial.test.<name>.*``).
        ``report.baseline``: the word-by-word IBM Model 1 baseline (:mod:`.baseline`), ``baseline.<split>.*``
        (and ``baseline.test.<name>.*``), with the settings valid chose; the lexicon's fitting time."""
        out = {"lexicon.seconds": self.lexicon_seconds} if self.cfg.model.lexicon else {}
        base = self.word_by_word() if self.cfg.report.baseline else None
        protect = base is not None and self.cfg.decode.hybrid and self.cfg.decode.protect
        if base is not None:
            out.update({f"baseline.{split}.{m}": base[split][m] for split in ("valid", "test") for m in ("bleu", "chrf")})
            out.update({"baseline.iterations": base["iterations"], "baseline.drop_null": int(base["drop_null"]),
                        "baseline.seconds": base["seconds"]})
        if protect:  # the hybrid's own word-by-word candidate, alone: what protecting code-like tokens gives
            for split in ("valid", "test"):
                scores = sacrebleu_scores([translate_with_table(base["table"], s, True) for s in self.sources[split]],
                                          self.refs[split], self.bleu_tokenize)
                out.update({f"baseline_protected.{split}.{m}": scores[m] for m in ("bleu", "chrf")})
        for name, pairs in (self.extra_tests or {}).items():
            sources, refs = [s for s, _ in pairs], [g for _, g in pairs]
            hyps = self.translate(model, [self.src_tok.encode(s) for s in sources], self.cfg.decode.beam,
                                  self.cfg.decode.alpha, attention=False, texts=sources)
            systems = {"": [self.tgt_tok.decode(h) for h in hyps.tokens], "trivial.": sources}
            if base is not None:
                systems["baseline."] = [base["translate"](s) for s in sources]
            if protect:
                systems["baseline_protected."] = [translate_with_table(base["table"], s, True) for s in sources]
            for prefix, texts in systems.items():
                scores = sacrebleu_scores(texts, refs, self.bleu_tokenize)
                out.update({f"{prefix}test.{name}.bleu": scores["bleu"], f"{prefix}test.{name}.chrf": scores["chrf"]})
        return out

    def fit_channel(self, train: list[tuple[str, str]]) -> dict:
        """``decode.channel``'s word lexicon (:func:`.lexicon.fit_word_channel`) on these training pairs,
        with how the target's words are cut (``unspaced``) for predict to cut them the same way."""
        unspaced = self.unspaced([g for _, g in train[:LANGUAGE_SAMPLE]])
        return dict(fit_word_channel(train, scripts.split_words, self.target_words(unspaced)), unspaced=unspaced)

    @staticmethod
    def unspaced(targets: list[str]) -> bool:
        """Whether the target language is written without spaces (Chinese, Japanese)."""
        return scripts.profile(targets).unspaced >= 0.1

    def target_words(self, unspaced: bool):
        """text -> the target language's words, as the word-level models (baseline, channel) see them: its
        words, or for a target written without spaces its subword pieces."""
        if unspaced:
            return lambda text: [p.lstrip("\u2581") for p in self.tgt_tok.tokens(text) if p.lstrip("\u2581")]
        return scripts.split_words

    def word_by_word(self) -> dict:
        """The word-by-word IBM Model 1 baseline on this run's splits (:func:`.baseline.word_by_word`),
        fitted once."""
        if self._base is not None:
            return self._base
        started = time.perf_counter()
        splits = {s: list(zip(self.sources[s], self.refs[s])) for s in ("valid", "test")}
        base = word_by_word(list(zip(self.sources["train"], self.refs["train"])), splits,
                            self.target_words(self.unspaced(self.refs["train"][:LANGUAGE_SAMPLE])),
                            self.bleu_tokenize, self.primary_metric)
        base["seconds"] = time.perf_counter() - started
        self._base = base
        return base

    def trivial_baseline(self, split):
        """The source sentence copied as its translation (what shared words and names alone score)."""
        scores = sacrebleu_scores(self.sources[split], self.refs[split], self.bleu_tokenize)
        return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

    def probes(self, model, indices):
        return diagnostics.probes(self, model, indices)

    def diag_extra(self, model):
        if not self.cfg.data.alignments:
            return {}
        return {"diag.aer": diagnostics.aer(self, model, self.cfg.data.alignments)}

    # ------------------------------------------------------------------ report and predict
    def report(self, model, run_dir, results):
        dec, d = self.cfg.decode, self.cfg.data
        texts, scores = results["test"]["texts"], results["test"]["scores"]
        if not results["test"].get("written"):  # (the final evaluation wrote them as they came)
            (Path(run_dir) / "test_hypotheses.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        lines = section("Translation", [
            f"direction: {'reversed ' if d.reverse else ''}{d.path or EMBEDDED_NAMES[str(d.embedded)]}",
            f"pairs: train {len(self.datasets['train'])}, valid {len(self.datasets['valid'])}, test "
            f"{len(self.datasets['test'])}; {self.filtered} training pairs longer than data.max_len={d.max_len} "
            "tokens dropped",
            f"malformed lines skipped: {self.skipped.skipped if self.skipped else 0}",
            f"tokenizer: sentencepiece {self.cfg.tokenizer.model_type}, vocabulary {self.src_tok.vocab_size}"
            f"{' (joint)' if self.src_tok is self.tgt_tok else ''}",
            f"test decoding: beam {dec.beam}, length penalty alpha {dec.alpha}"
            + (f", lexicon weight {dec.lexicon_weight:g}" if self.cfg.model.lexicon else "")
            + (self.hybrid_note(results.get("run", {})) if self.state.hybrid is not None and dec.hybrid and dec.beam > 1
               else f", noisy-channel re-ranking {dec.channel:g} (word-level IBM Model 1, target -> source)"
               if dec.channel > 0 and dec.beam > 1 else ""),
            self.lang_note,
            f"sacreBLEU {scores['bleu']:.2f} (`{scores['bleu_signature']}`)",
            f"chrF {scores['chrf']:.2f} (`{scores['chrf_signature']}`)",
            "alignment error rate (`diag.aer`): " + ("against the gold word alignments of `data.alignments=`"
                                                     if d.alignments else "none -- no gold word alignments were "
                                                     "given (`data.alignments=`)")])
        run = results.get("run", {})
        lines += self.baseline_lines(results)
        if self.extra_tests:
            prefixes = ("", "trivial.") + (("baseline.",) if "baseline.test.bleu" in run else ()) + (
                ("baseline_protected.",) if "baseline_protected.test.bleu" in run else ())
            names = {"": "model", "trivial.": "copy the source", "baseline.": "word by word",
                     "baseline_protected.": "word by word, code kept"}
            lines += ["", "### Further test sets (`data.extra_test`)", ""]
            lines += table(["test set", "pairs"] + [f"{names[k]}: {m}" for k in prefixes for m in ("BLEU", "chrF")],
                           [[name, len(pairs)] + [f"{run.get(f'{k}test.{name}.{m}', float('nan')):.2f}"
                                                  for k in prefixes for m in ("bleu", "chrf")]
                            for name, pairs in self.extra_tests.items()])
        lines += ["", "Test hypotheses: `test_hypotheses.txt`.", "", "### Sample translations", ""]
        lines += table(["source", "reference", "hypothesis"],
                       [[self.sources["test"][i], self.refs["test"][i], texts[i]]
                        for i in range(min(self.cfg.report.examples, len(texts)))])
        lines += ["", "### Attention alignments (greedy decoding, test sentences)", ""]
        for k in range(min(self.cfg.report.figures, len(texts))):
            path = self.plot_alignment(model, self.sources["test"][k], Path(run_dir) / "plots" / f"alignment_{k}.png")
            if path is not None:
                lines.append(f"![alignment {k}](plots/{path.name})")
        return ["\n".join(lines)]

    def hybrid_note(self, run: dict) -> str:
        """The hybrid's weights and how often the word-by-word translation was the answer."""
        weights = ", ".join(f"{f} {w:g}" for f, w in zip(hybrid.FEATURES, self.state.hybrid["weights"]))
        shares = " and ".join(f"{run[f'{s}.word_by_word_share']:.0%} of {s}" for s in ("valid", "test")
                              if f"{s}.word_by_word_share" in run)
        return (f"; hybrid with the word-by-word translation (`decode.hybrid`, weights chosen on valid: {weights})"
                + (f" -- the word-by-word translation chosen for {shares}" if shares else ""))

    def baseline_lines(self, results) -> list[str]:
        """The model beside the baselines on valid and test, and a plain sentence when the word-by-word
        baseline is ahead on valid (where every choice is made)."""
        run, m = results.get("run", {}), self.cfg.model
        if "valid" not in results:
            return []
        own = [results[s]["scores"][k] for s in ("valid", "test") for k in ("bleu", "chrf")]
        features = [x for x, on in (("copy attention", m["copy"]), ("IBM Model 1 lexicon", m.lexicon)) if on]
        rows = [[f"**this model** ({m.arch}" + (", " + ", ".join(features) if features else "") + ")"]
                + [f"{v:.2f}" for v in own],
                ["copy the source", "", "", f"{run.get('trivial.test.bleu', float('nan')):.2f}",
                 f"{run.get('trivial.test.chrf', float('nan')):.2f}"]]
        lines = ["", "### Beside the baselines", ""]
        if "baseline.valid.bleu" in run:
            it, drop = int(run["baseline.iterations"]), bool(run["baseline.drop_null"])
            rows.append([f"word by word, IBM Model 1 ({it} EM iterations, NULL-aligned words "
                         f"{'dropped' if drop else 'kept'}: chosen on valid)"]
                        + [f"{run[f'baseline.{s}.{k}']:.2f}" for s in ("valid", "test") for k in ("bleu", "chrf")])
        if "baseline_protected.valid.bleu" in run:
            rows.append(["the same, code-like tokens copied whole (`decode.protect`: the hybrid's word-by-word "
                         "candidate)"] + [f"{run[f'baseline_protected.{s}.{k}']:.2f}" for s in ("valid", "test")
                                          for k in ("bleu", "chrf")])
        lines += table(["system", "valid sacreBLEU", "valid chrF", "test sacreBLEU", "test chrF"], rows)
        if "baseline.valid.bleu" in run:
            behind = [k for k, i in (("sacreBLEU", 0), ("chrF", 1)) if run[f"baseline.valid.{('bleu', 'chrf')[i]}"] > own[i]]
            lines += ["", (f"**On valid, the word-by-word baseline is ahead of this model on {' and '.join(behind)}.**"
                           if behind else "On valid, this model is ahead of the word-by-word baseline on sacreBLEU "
                           "and chrF.")]
        return lines

    def plot_alignment(self, model, source: str, out: Path):
        ids = self.src_tok.encode(source)
        hyps = self.translate(model, [ids], beam=1)
        if hyps.attention[0] is None or not hyps.tokens[0]:
            return None
        m = self.cfg.model
        title = f"{m.arch}" + (f" / {m.attention}" if "attention" in arch_keys(m) else "")
        return attention_heatmap(hyps.attention[0].cpu(), [self.src_tok.id_to_piece(i) for i in ids],
                                 [self.tgt_tok.id_to_piece(i) for i in hyps.tokens[0]], out, title=title)

    def export_inputs(self, model, batch: int, length: int, generator):
        """ONNX export (:mod:`attnapps.export.graphs`): random source ids of the encoder's shapes."""
        src, src_len = random_ids(batch, length, self.src_tok.vocab_size, generator, self.src_tok.pad_id)
        return ExampleInputs({"src": src, "src_len": src_len}, self.tgt_tok.bos_id, self.tgt_tok.eos_id)

    def inference_context(self, model):
        """What decoding sets on the model, set for the ONNX export too: the lexicon's weight."""
        return lexicon_weight(model, self.cfg.decode.lexicon_weight)

    serve_options = ("beam", "alpha")
    serve_limits = {"beam": "max_beam"}  # what attnapps.serve caps (its max_* keys)
    predict_defaults = "decode"  # predict and the server decode as the run did unless asked otherwise

    def count_tokens(self, text):
        return len(self.src_tok.encode(text))

    @torch.no_grad()
    def infer(self, model, inputs, options):
        """Sentences -> their translations, each with the n-best list and every attention module's weights
        (the RNN's attention; the Transformer's encoder self-, decoder self- and cross-attention per layer
        and head), recorded on the best hypothesis forced through the model."""
        ids = [self.src_tok.encode(s) or [self.src_tok.unk_id] for s in inputs]
        hyps = self.translate(model, ids, options.beam, options.alpha, n_best=min(options.beam, 5), attention=False,
                              options=options, texts=list(inputs))  # every module's weights: forced_views below
        piece = self.tgt_tok.id_to_piece
        src, src_len = pad_batch(ids)  # (batch, src_len)
        seqs = [{"source": [self.src_tok.id_to_piece(t) for t in s], "output": [piece(t) for t in h] + ["</s>"],
                 "output_in": ["<s>"] + [piece(t) for t in h]} for s, h in zip(ids, hyps.tokens)]
        recorded = forced_views(model, lambda tgt_in: model(src.to(self.device), src_len.to(self.device),
                                                            tgt_in.to(self.device)),
                                hyps.tokens, self.tgt_tok.bos_id, seqs,
                                encoder_decoder_route("source", "output", "output_in"))
        copies = self.copy_views(model, src, src_len, hyps.tokens) if getattr(model, "copy", None) is not None else None
        out = []
        for i, h in enumerate(hyps.tokens):
            views = recorded[i]
            views.sort(key=lambda v: ({"source": 0, "output_in": 1}[v["k"]] if v["q"] == "output" else 2, v["name"]))
            nbest = [[self.tgt_tok.decode(t), round(sc, 3)] for t, sc in (hyps.nbest[i] if hyps.nbest else [])]
            copy = None
            if copies is not None:  # the copy distribution first: what each output token took from the source
                weights, p_copy = copies[i]
                views.insert(0, view("copy: P(copy) x attention (a row sums to P(copy))", "output", "source", weights))
                copy = {"q": "output", "k": "source", "p": [round(float(p), 3) for p in p_copy],
                        "from": weights.argmax(-1).tolist()}
            out.append(example(seqs[i], views, text=self.tgt_tok.decode(h), nbest=nbest or None,
                               title=inputs[i], copy=copy))
        return out

    @torch.no_grad()
    def copy_views(self, model, src, src_len, outputs: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """With ``model.copy``: for each output forced through the model (and its ``</s>``), the copy
        distribution over the source ``(len + 1, src_len)`` -- P(copy) times the attention the copy is
        made of (:meth:`explained_attention`, the mean of its heads) -- and P(copy) ``(len + 1,)``."""
        tgt_in, _ = pad_batch([[self.tgt_tok.bos_id] + o for o in outputs])  # (batch, len + 1)
        with record(model) as maps:
            _, p_copy = model.teacher_forced(src.to(self.device), src_len.to(self.device), tgt_in.to(self.device))
        name = next(n for n, m in model.named_modules() if m is model.explained_attention()[0])
        weights = maps[name].float().mean(1) * p_copy.unsqueeze(-1)  # (batch, len + 1, src_len)
        return [(weights[i, : len(o) + 1, : int(src_len[i])].cpu(), p_copy[i, : len(o) + 1].cpu())
                for i, o in enumerate(outputs)]

    def explore(self, model, results, n):
        k = min(n, len(self.sources["test"]))
        options = predict_options(self, {})  # as predict and the server decode: the run's decode.beam/alpha
        examples = self.infer(model, self.sources["test"][:k], options)
        for ex, ref in zip(examples, self.refs["test"][:k]):
            ex["refs"] = [ref]
        return examples

    def predict(self, model, options):
        sentences = [line.strip() for line in read_input(options.input).splitlines()]
        if options.hybrid and options.beam > 1 and not isinstance(model, nn.Module):
            print("note: an ONNX export decodes with the model's own beam (the hybrid's word-by-word candidate is "
                  "scored by a teacher-forced pass the export does not have): as hybrid=false", file=sys.stderr)
        hyps = self.translate(model, [self.src_tok.encode(s) for s in sentences], options.beam, options.alpha,
                              n_best=options.n_best, attention=False, options=options, texts=sentences)
        if options.n_best > 1 and hyps.nbest is not None:  # Moses' n-best format: input number ||| text ||| score
            write_output(options.output, [f"{n} ||| {self.tgt_tok.decode(h) if s else ''} ||| {score:.4f}"
                                          for n, (s, best) in enumerate(zip(sentences, hyps.nbest))
                                          for h, score in best])
        else:
            write_output(options.output, [self.tgt_tok.decode(h) if s else "" for s, h in zip(sentences, hyps.tokens)])
        if options.plot_dir:
            for n, s in enumerate(sentences):
                if s:
                    self.plot_alignment(model, s, Path(options.plot_dir) / f"align_{n}.png")
