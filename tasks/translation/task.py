"""``task=translation``: train an attention encoder-decoder, translate the test set with beam search,
score it with sacreBLEU and chrF, and report alignments.

    python -m attnapps.run task=translation [model.arch=transformer] [model.attention=dot] [data.path=DIR]
    python -m attnapps.predict task=translation run=RUN_DIR [input=FILE] [output=FILE] [beam=5] [plot_dir=DIR]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F

from attnapps.config import (PROBABILITY, Attention, OnError, RunConfig, SentencePieceType, TrainerConfig, at_least,
                             check_heads, choice, positive)
from attnapps.data.files import read_input
from attnapps.data import SentencePieceTokenizer, pad_batch, tokenizer_from_state
from attnapps.decoding import beam_search, greedy
from attnapps.errors import ConfigError
from attnapps.metrics import sacrebleu_scores
from attnapps.plots import attention_heatmap
from attnapps.task import Task, register_task
from .data import load_pairs
from .model import RNNSeq2Seq, TransformerSeq2Seq


Arch = choice("Arch", ["rnn", "transformer"])
Cell = choice("Cell", ["gru", "lstm"])


@dataclass
class TranslationData:
    path: str = ""  # DIR with {train,valid,test}.tsv or train.<src_lang>/train.<tgt_lang>; "" = embedded en-de
    src_lang: str = "en"  # file suffixes of the line-aligned layout
    tgt_lang: str = "de"
    reverse: bool = False  # swap source and target (German -> English on the default data)
    max_len: int = 50  # drop training pairs with more subword tokens than this on either side
    on_error: OnError = "raise"  # raise | skip (skip and count malformed lines)


@dataclass
class TranslationTokenizer:
    vocab_size: int = 4000  # sentencepiece vocabulary (joint, or per side)
    model_type: SentencePieceType = "unigram"  # unigram | bpe
    joint: bool = True  # one vocabulary for both languages (needed for model.share_embeddings)


@dataclass
class TranslationModel:
    arch: Arch = "rnn"  # rnn | transformer
    attention: Attention = "additive"  # rnn: any core variant (additive, dot, general, scaled_dot, multihead)
    cell: Cell = "gru"  # rnn: gru | lstm
    embed_size: int = 256  # rnn
    hidden_size: int = 256  # rnn hidden / transformer d_model
    layers: int = 1  # rnn: 1-2; transformer: 3
    heads: int = 4  # transformer (and rnn with multihead attention)
    ff_size: int = 1024  # transformer
    dropout: float = 0.2
    label_smoothing: float = 0.1
    share_embeddings: bool = True  # tie source/target embeddings (transformer; needs tokenizer.joint)


@dataclass
class TranslationDecode:
    beam: int = 5
    alpha: float = 0.6  # GNMT length penalty
    max_len_ratio: float = 1.5  # max target tokens = ratio * source tokens + max_len_add
    max_len_add: int = 10
    valid_subset: int = 400  # sentences scored by greedy BLEU at each evaluation during training
    samples: int = 10  # sample translations in the report
    plots: int = 4  # alignment heatmaps in the report


@dataclass
class TranslationConfig(RunConfig):
    task_name: str = "translation"
    data: TranslationData = field(default_factory=TranslationData)
    tokenizer: TranslationTokenizer = field(default_factory=TranslationTokenizer)
    model: TranslationModel = field(default_factory=TranslationModel)
    decode: TranslationDecode = field(default_factory=TranslationDecode)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=40, max_minutes=6.0, batch_size=64, lr=3e-3, warmup_steps=200, schedule="cosine",
        eval_every=500, eval_max_batches=0, clip_grad_norm=1.0, betas=(0.9, 0.98)))


@dataclass
class TranslationPredict:
    input: str = "-"  # file with one source sentence per line, or - for stdin
    output: str = "-"  # file for the translations, or - for stdout
    beam: int = 5
    alpha: float = 0.6
    plot_dir: str = ""  # if set: an alignment heatmap per sentence, DIR/align_<n>.png


@register_task("translation")
class TranslationTask(Task):
    config_class = TranslationConfig
    predict_config_class = TranslationPredict
    primary_metric = "bleu"
    higher_is_better = True
    count_unit = "tokens"
    predict_rules = {"beam": at_least(1), "alpha": at_least(0)}
    config_rules = {
        "data.max_len": at_least(1), "tokenizer.vocab_size": at_least(8), "model.embed_size": at_least(1),
        "model.hidden_size": at_least(1), "model.layers": at_least(1), "model.heads": at_least(1),
        "model.ff_size": at_least(1), "model.dropout": PROBABILITY, "model.label_smoothing": PROBABILITY,
        "decode.beam": at_least(1), "decode.alpha": at_least(0), "decode.max_len_ratio": positive,
        "decode.max_len_add": at_least(0), "decode.valid_subset": at_least(0), "decode.samples": at_least(0),
        "decode.plots": at_least(0)}

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        m = cfg.model
        check_heads(m, m.hidden_size, "model.hidden_size")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.src_tok = self.tgt_tok = None
        self.filtered = 0
        self.skipped = None

    # ------------------------------------------------------------------ data
    def build_data(self):
        d, t = self.cfg.data, self.cfg.tokenizer
        splits, policy = load_pairs(d.path, d.src_lang, d.tgt_lang, d.on_error, self.cfg.seed, d.reverse)
        self.skipped = policy
        self.raw = splits
        train = splits["train"]
        if self.restored:  # resume: the checkpoint's tokenizers
            pass
        elif t.joint:
            self.src_tok = self.tgt_tok = SentencePieceTokenizer().fit(
                [s for s, _ in train] + [g for _, g in train], t.vocab_size, t.model_type)
        else:
            self.src_tok = SentencePieceTokenizer().fit([s for s, _ in train], t.vocab_size, t.model_type)
            self.tgt_tok = SentencePieceTokenizer().fit([g for _, g in train], t.vocab_size, t.model_type)
        data = {}
        for split, pairs in splits.items():
            enc = [(self.src_tok.encode(s), self.tgt_tok.encode(g)) for s, g in pairs]
            if split == "train":
                keep = [e for e in enc if 0 < len(e[0]) <= d.max_len and 0 < len(e[1]) <= d.max_len]
                self.filtered = len(enc) - len(keep)
                enc = keep
            data[split] = enc
        self.refs = {split: [g for _, g in pairs] for split, pairs in splits.items()}
        self.sources = {split: [s for s, _ in pairs] for split, pairs in splits.items()}
        return data

    def lengths(self, split):
        return [max(len(s), len(t)) + 1 for s, t in self.datasets[split]]

    def collate(self, examples):
        bos, eos = self.tgt_tok.bos_id, self.tgt_tok.eos_id
        src, src_len = pad_batch([s for s, _ in examples])  # (batch, src_len)
        tgt_in, _ = pad_batch([[bos] + t for _, t in examples])  # (batch, tgt_len + 1)
        tgt_out, _ = pad_batch([t + [eos] for _, t in examples])
        return {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}

    # ------------------------------------------------------------------ model
    def build_model(self):
        m = self.cfg.model
        sv, tv = self.src_tok.vocab_size, self.tgt_tok.vocab_size
        share = m.share_embeddings and self.src_tok is self.tgt_tok
        if m.arch == "rnn":
            return RNNSeq2Seq(sv, tv, m.embed_size, m.hidden_size, m.layers, m.cell, m.attention, m.dropout,
                              m.heads, share_embeddings=share)
        if m.arch == "transformer":
            return TransformerSeq2Seq(sv, tv, m.hidden_size, m.heads, m.layers, m.ff_size, m.dropout,
                                      share_embeddings=share)
        raise ConfigError(f"model.arch={m.arch!r}: choose rnn or transformer")

    def loss(self, model, batch):
        logits = model(batch["src"], batch["src_len"], batch["tgt_in"])  # (batch, tgt_len, vocab)
        target = batch["tgt_out"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=self.tgt_tok.pad_id,
                               reduction="sum", label_smoothing=self.cfg.model.label_smoothing)
        return loss, (target != self.tgt_tok.pad_id).sum()

    # ------------------------------------------------------------------ decoding
    def translate(self, model, sources: list[list[int]], beam: int = 1, alpha: float = 0.6, batch_size: int = 64):
        """Token ids -> (hypothesis ids, attention) lists in input order; batches sorted by length."""
        model.eval()
        dec = self.cfg.decode
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        hyps, attns = [None] * len(sources), [None] * len(sources)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            src, src_len = pad_batch([sources[i] or [self.src_tok.unk_id] for i in idx])
            src, src_len = src.to(self.device), src_len.to(self.device)
            max_len = (src_len.float() * dec.max_len_ratio + dec.max_len_add).long()
            state = model.encode(src, src_len)
            kw = dict(batch_size=len(idx), bos=self.tgt_tok.bos_id, eos=self.tgt_tok.eos_id, max_len=max_len,
                      device=self.device)
            out = greedy(model.step, state, **kw) if beam <= 1 else beam_search(model.step, state, beam=beam,
                                                                                 alpha=alpha, **kw)
            for j, i in enumerate(idx):
                hyps[i], attns[i] = out.tokens[j], out.attention[j]
        return hyps, attns

    def evaluate(self, model, split, final=False):
        dec = self.cfg.decode
        n = len(self.datasets[split]) if final else min(dec.valid_subset, len(self.datasets[split]))
        sources = [s for s, _ in self.datasets[split][:n]]
        hyps, _ = self.translate(model, sources, beam=dec.beam if final else 1, alpha=dec.alpha)
        texts = [self.tgt_tok.decode(h) for h in hyps]
        scores = sacrebleu_scores(texts, self.refs[split][:n])
        if final:
            self.last_outputs = getattr(self, "last_outputs", {})
            self.last_outputs[split] = (texts, scores)
        return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

    # ------------------------------------------------------------------ report and predict
    def report(self, model, run_dir):
        dec = self.cfg.decode
        texts, scores = getattr(self, "last_outputs", {}).get("test", (None, None))
        if texts is None:
            self.evaluate(model, "test", final=True)
            texts, scores = self.last_outputs["test"]
        (Path(run_dir) / "test_hypotheses.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        lines = ["## Translation", "",
                 f"- direction: {'reversed ' if self.cfg.data.reverse else ''}"
                 f"{self.cfg.data.path or 'embedded en-de (Ding dictionary)'}",
                 f"- pairs: train {len(self.datasets['train'])}, valid {len(self.datasets['valid'])}, "
                 f"test {len(self.datasets['test'])}; {self.filtered} training pairs longer than "
                 f"data.max_len={self.cfg.data.max_len} tokens dropped",
                 f"- malformed lines skipped: {self.skipped.skipped if self.skipped else 0}",
                 f"- tokenizer: sentencepiece {self.cfg.tokenizer.model_type}, vocabulary {self.src_tok.vocab_size}"
                 f"{' (joint)' if self.src_tok is self.tgt_tok else ''}",
                 f"- test decoding: beam {dec.beam}, length penalty alpha {dec.alpha}",
                 f"- sacreBLEU {scores['bleu']:.2f} (`{scores['bleu_signature']}`)",
                 f"- chrF {scores['chrf']:.2f} (`{scores['chrf_signature']}`)",
                 "", "Test hypotheses: `test_hypotheses.txt`.", "", "### Sample translations", "",
                 "| source | reference | hypothesis |", "|---|---|---|"]
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        for i in range(min(dec.samples, len(texts))):
            lines.append(f"| {esc(self.sources['test'][i])} | {esc(self.refs['test'][i])} | {esc(texts[i])} |")
        lines += ["", "### Attention alignments (greedy decoding, test sentences)", ""]
        for k, i in enumerate(range(min(dec.plots, len(texts)))):
            path = self.plot_alignment(model, self.sources["test"][i], Path(run_dir) / "plots" / f"alignment_{k}.png")
            if path is not None:
                lines.append(f"![alignment {k}](plots/{path.name})")
        return ["\n".join(lines)]

    def plot_alignment(self, model, source: str, out: Path):
        ids = self.src_tok.encode(source)
        hyps, attns = self.translate(model, [ids], beam=1)
        if attns[0] is None or not hyps[0]:
            return None
        return attention_heatmap(attns[0].cpu(), [self.src_tok.id_to_piece(i) for i in ids],
                                 [self.tgt_tok.id_to_piece(i) for i in hyps[0]], out,
                                 title=f"{self.cfg.model.arch} / {self.cfg.model.attention}")

    def predict(self, model, options):
        text = read_input(options.input)
        sentences = [line.strip() for line in text.splitlines()]
        hyps, _ = self.translate(model, [self.src_tok.encode(s) for s in sentences], beam=options.beam,
                                 alpha=options.alpha)
        outputs = [self.tgt_tok.decode(h) if s else "" for s, h in zip(sentences, hyps)]
        if options.output == "-":
            sys.stdout.write("".join(o + "\n" for o in outputs))
        else:
            try:
                Path(options.output).write_text("".join(o + "\n" for o in outputs), encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"output={options.output}: cannot write ({e.strerror})") from None
        if options.plot_dir:
            for n, s in enumerate(sentences):
                if s:
                    self.plot_alignment(model, s, Path(options.plot_dir) / f"align_{n}.png")

    def state_dict(self):
        state = {"src_tokenizer": self.src_tok.state_dict()}
        if self.tgt_tok is not self.src_tok:
            state["tgt_tokenizer"] = self.tgt_tok.state_dict()
        return state

    def load_state_dict(self, state):
        self.src_tok = tokenizer_from_state(state["src_tokenizer"])
        self.tgt_tok = tokenizer_from_state(state["tgt_tokenizer"]) if "tgt_tokenizer" in state else self.src_tok
