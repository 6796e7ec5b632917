"""``task=generation``: train a causal language model, report perplexity and bits per character, and
sample from it with a key/value cache.

    python -m attnapps.run task=generation [model.arch=lstm_attention] [tokenizer=sentencepiece] [data.path=DIR|FILE]
    python -m attnapps.predict task=generation run=RUN_DIR prompt="It is a truth" max_new_tokens=200
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from attnapps.config import (PROBABILITY_OR_AUTO, Attention, OnError, RunConfig, SentencePieceType, TrainerConfig,
                             at_least, between, check_heads, choice)
from attnapps.data import CharTokenizer, SentencePieceTokenizer, tokenizer_from_state
from attnapps.data.files import cache_root
from attnapps.data.vocab import EOS
from attnapps.decoding import sample_tokens
from attnapps.errors import ConfigError, DataError
from attnapps.metrics import bits_per_char, perplexity
from attnapps.plots import attention_heatmap
from attnapps.task import Task, register_task
from .data import Windows, encode_cached, load_corpus
from .model import GPT, LSTMAttentionLM


DataFormat = choice("DataFormat", ["txt", "wikitext"])
TokenizerKind = choice("TokenizerKind", ["char", "sentencepiece"])
Arch = choice("Arch", ["transformer", "lstm_attention"])
Positions = choice("Positions", ["learned", "sinusoidal"])


@dataclass
class GenerationData:
    path: str = ""  # DIR with {train,valid,test}.txt, or FILE.txt (split 90/5/5); "" = embedded Jane Austen
    format: DataFormat = "txt"  # txt | wikitext (DIR/wiki.{train,valid,test}.raw)
    cache_dir: str = ""  # encoded corpora (memory maps); "" = $ATTNAPPS_CACHE or ~/.cache/attnapps
    on_error: OnError = "raise"  # raise | skip (drop and count lines that are not UTF-8)


@dataclass
class GenerationTokenizer:
    kind: TokenizerKind = "char"  # char | sentencepiece
    vocab_size: int = 2000  # sentencepiece
    model_type: SentencePieceType = "unigram"  # sentencepiece: unigram | bpe


@dataclass
class GenerationModel:
    arch: Arch = "lstm_attention"  # lstm_attention (chosen on valid, README) | transformer (decoder-only, GPT)
    context: int = 128  # tokens the model sees
    d_model: int = 0  # transformer width / LSTM hidden and embedding size; 0 = the arch's (ARCH_DEFAULTS)
    layers: int = 4
    heads: int = 4
    ff_size: int = 0  # transformer MLP; 0 = 4 * d_model
    dropout: float = -1.0  # < 0 = the arch's (ARCH_DEFAULTS: a 6-minute run sees the corpus about twice)
    positions: Positions = "learned"  # transformer: learned | sinusoidal
    tie_weights: bool = True  # output layer = token embedding
    attention: Attention = "general"  # lstm_attention: any core variant (additive is memory-hungry: len x len x d)


@dataclass
class GenerationSample:
    prompt: str = "It is a truth"  # report samples start here
    max_new_tokens: int = 300
    temperatures: list[float] = field(default_factory=lambda: [0.5, 0.8, 1.0])
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    heatmap_layer: int = -1  # the attention heatmap's layer (-1 = last) and head
    heatmap_head: int = 0
    heatmap_tokens: int = 48  # the last N tokens of a generated passage
    eval_tokens: int = 65536  # tokens of valid scored at each evaluation during training (0 = all)


@dataclass
class GenerationConfig(RunConfig):
    task_name: str = "generation"
    data: GenerationData = field(default_factory=GenerationData)
    tokenizer: GenerationTokenizer = field(default_factory=GenerationTokenizer)
    model: GenerationModel = field(default_factory=GenerationModel)
    sample: GenerationSample = field(default_factory=GenerationSample)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_epochs=20, max_minutes=6.0, batch_size=32, lr=3e-3, warmup_steps=100, schedule="cosine",
        weight_decay=0.1, betas=(0.9, 0.99), clip_grad_norm=1.0, eval_every=250, eval_max_batches=8, patience=0))


@dataclass
class GenerationPredict:
    prompt: str = "It is a truth"
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop: str = ""  # stop once the continuation contains this string
    cache: bool = True  # incremental key/value cache (false: recompute the window each token)


@register_task("generation")
class GenerationTask(Task):
    config_class = GenerationConfig
    predict_config_class = GenerationPredict
    primary_metric = "bpc"
    higher_is_better = False
    count_unit = "tokens"
    # Per architecture: width and dropout when model.d_model=0 / model.dropout<0 (chosen on valid, README).
    ARCH_DEFAULTS = {"lstm_attention": {"d_model": 192, "dropout": 0.1}, "transformer": {"d_model": 128, "dropout": 0.0}}
    predict_rules = {"max_new_tokens": at_least(1), "temperature": at_least(0), "top_k": at_least(0),
                     "top_p": between(0, 1, lo_open=True)}
    config_rules = {
        "tokenizer.vocab_size": at_least(8), "model.context": at_least(1), "model.d_model": at_least(0),
        "model.layers": at_least(1), "model.heads": at_least(1), "model.ff_size": at_least(0),
        "model.dropout": PROBABILITY_OR_AUTO,
        "sample.max_new_tokens": at_least(1), "sample.top_k": at_least(0),
        "sample.top_p": between(0, 1, lo_open=True), "sample.heatmap_tokens": at_least(1),
        "sample.eval_tokens": at_least(0)}

    @classmethod
    def resolve_arch_defaults(cls, m) -> None:
        """``model.d_model=0`` and ``model.dropout<0`` become the chosen architecture's values."""
        a = cls.ARCH_DEFAULTS[str(m.arch)]
        if m.d_model <= 0:
            m.d_model = a["d_model"]
        if m.dropout < 0:
            m.dropout = a["dropout"]

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        m, s = cfg.model, cfg.sample
        check_heads(m, m.d_model or cls.ARCH_DEFAULTS[str(m.arch)]["d_model"], "model.d_model")
        if any(not 0 <= t < 100 for t in s.temperatures):
            raise ConfigError(f"bad value for config key 'sample.temperatures': {list(s.temperatures)} "
                              "must each be in [0, 100)")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.resolve_arch_defaults(cfg.model)  # before config.yaml is written: it holds the values used
        self.tok, self.speed = None, {}

    # ------------------------------------------------------------------ text <-> ids
    def encode(self, text: str) -> list[int]:
        """Characters -> ids; with sentencepiece each line is encoded and ``<eos>`` marks its newline."""
        if self.tok.kind == "char":
            return self.tok.encode(text)
        lines, ids = text.split("\n"), []
        for k, line in enumerate(lines):
            ids += self.tok.encode(line) + ([EOS] if k < len(lines) - 1 else [])
        return ids

    def decode(self, ids) -> str:
        if self.tok.kind == "char":
            return self.tok.decode(ids)
        lines, current = [], []
        for i in ids:
            if i == EOS:
                lines.append(self.tok.decode(current))
                current = []
            else:
                current.append(i)
        return "\n".join(lines + [self.tok.decode(current)])

    # ------------------------------------------------------------------ data
    def build_data(self):
        d, t = self.cfg.data, self.cfg.tokenizer
        texts, self.policy, self.source = load_corpus(d.path, d.format, d.on_error)
        if self.restored:  # resume: the checkpoint's tokenizer
            pass
        elif t.kind == "char":
            self.tok = CharTokenizer().fit([texts["train"]])
        elif t.kind == "sentencepiece":
            self.tok = SentencePieceTokenizer().fit(texts["train"].split("\n"), t.vocab_size, t.model_type)
        else:
            raise ConfigError(f"tokenizer.kind={t.kind!r}: choose char or sentencepiece")
        cache = cache_root(d.cache_dir)
        fp = tokenizer_fingerprint(self.tok)
        self.ids = {s: encode_cached(texts[s], self.encode, fp, self.tok.vocab_size, cache, s) for s in texts}
        self.chars = {s: len(texts[s]) for s in texts}
        ctx = self.cfg.model.context
        if len(self.ids["train"]) < ctx + 1:
            raise DataError(self.source, None, f"the training text has {len(self.ids['train'])} tokens; "
                            f"model.context={ctx} needs at least {ctx + 1} (give more text or a smaller model.context)")
        return {s: Windows(self.ids[s], ctx) for s in texts}

    def collate(self, examples):
        return {"ids": torch.stack(examples)}  # (batch, context + 1)

    # ------------------------------------------------------------------ model
    def build_model(self):
        m, v = self.cfg.model, self.tok.vocab_size
        if m.arch == "transformer":
            return GPT(v, m.context, m.d_model, m.heads, m.layers, m.ff_size, m.dropout, m.positions, m.tie_weights)
        if m.arch == "lstm_attention":
            return LSTMAttentionLM(v, m.context, m.d_model, m.d_model, m.layers, m.attention, m.heads, m.dropout,
                                   m.tie_weights)
        raise ConfigError(f"model.arch={m.arch!r}: choose transformer or lstm_attention")

    def loss(self, model, batch):
        ids = batch["ids"]
        logits = model(ids[:, :-1])  # (batch, context, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum")
        return loss, torch.tensor(ids[:, 1:].numel())

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def nll(self, model, split: str, max_tokens: int = 0) -> tuple[float, int]:
        """Summed NLL (nats) and token count over the split's first ``max_tokens`` (0 = all), scored in
        non-overlapping windows of ``context`` predictions (the last one partial)."""
        model.eval()
        ids, ctx = self.ids[split], self.cfg.model.context
        n = len(ids) if not max_tokens else min(len(ids), max_tokens + 1)
        windows = Windows(ids[:n], ctx)  # full windows of ctx + 1 tokens
        total, count = 0.0, 0

        def score(x: torch.Tensor):  # (b, len + 1) windows of equal length
            nonlocal total, count
            x = x.to(self.device)
            logits = model(x[:, :-1])  # (b, len, vocab)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten(), reduction="sum"))
            count += x[:, 1:].numel()

        for start in range(0, len(windows), 64):
            score(torch.stack([windows[i] for i in range(start, min(start + 64, len(windows)))]))
        tail = len(windows) * ctx  # the last, partial window
        if tail < n - 1:
            score(torch.from_numpy(ids[tail:n].astype("int64")).unsqueeze(0))
        return total, count

    def evaluate(self, model, split, final=False):
        total, count = self.nll(model, split, 0 if final else self.cfg.sample.eval_tokens)
        chars_per_token = self.chars[split] / max(1, len(self.ids[split]))
        return {"perplexity": perplexity(total, count), "bpc": bits_per_char(total, count * chars_per_token)}

    def measure_generation(self, model, new_tokens: int = 200) -> dict:
        """Generation tokens/s with and without the key/value cache (same prompt, seed and tokens)."""
        model.eval()
        prompt = self.encode(self.cfg.sample.prompt)
        out = {}
        for name, cache in (("cached", True), ("uncached", False)):
            t0 = time.perf_counter()
            tokens = sample_tokens(model, prompt, new_tokens, 0.8, seed=0, use_cache=cache, device=self.device)
            out[name] = len(tokens) / (time.perf_counter() - t0)
        return out

    def extra_metrics(self, model):
        self.speed = self.measure_generation(model)  # the report shows it too
        return {f"generate.tokens_per_sec_{k}": v for k, v in self.speed.items()}

    # ------------------------------------------------------------------ report and predict
    def generate(self, model, prompt: str, max_new_tokens: int, temperature: float, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, stop: str = "", cache: bool = True) -> str:
        model.eval()
        should_stop = (lambda ids: stop in self.decode(ids)) if stop else None
        ids = sample_tokens(model, self.encode(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                            use_cache=cache, should_stop=should_stop, device=self.device)
        text = self.decode(ids)
        return text[: text.index(stop) + len(stop)] if stop and stop in text else text

    def report(self, model, run_dir):
        run_dir, s = Path(run_dir), self.cfg.sample
        lines = ["## Generation", "",
                 f"- data: {self.source}; tokens train {len(self.ids['train']):,}, valid {len(self.ids['valid']):,}, "
                 f"test {len(self.ids['test']):,}; characters per token (test) "
                 f"{self.chars['test'] / max(1, len(self.ids['test'])):.3f}",
                 f"- lines skipped (not UTF-8): {self.policy.skipped}",
                 f"- tokenizer: {self.tok.kind}, vocabulary {self.tok.vocab_size}",
                 f"- model: {self.cfg.model.arch}, context {self.cfg.model.context}, width {self.cfg.model.d_model}, "
                 f"{self.cfg.model.layers} layers" + (f", {self.cfg.model.heads} heads" if self.cfg.model.arch == "transformer"
                                                      else f", attention {self.cfg.model.attention}")]
        if self.speed:
            lines.append(f"- generation: {self.speed['cached']:.0f} tokens/s with the key/value cache, "
                         f"{self.speed['uncached']:.0f} tokens/s without ({self.speed['cached'] / self.speed['uncached']:.1f}x)")
        lines += ["", "### Samples", ""]
        samples = []
        for temp in s.temperatures:
            text = self.generate(model, s.prompt, s.max_new_tokens, temp, s.top_k, s.top_p, s.seed)
            samples.append(text)
            lines += [f"**temperature {temp}** (top-k {s.top_k or 'off'}, top-p {s.top_p}, seed {s.seed}):", "",
                      "```", (s.prompt + text).replace("```", "'''"), "```", ""]
        d1, d2 = distinct_n(samples, 1), distinct_n(samples, 2)
        self.distinct = (d1, d2)
        lines.append(f"distinct-1 {d1:.3f}, distinct-2 {d2:.3f} (unique word n-grams / all, over the samples above)")
        path = self.heatmap(model, s.prompt + samples[len(samples) // 2], run_dir / "plots" / "attention_heatmap.png")
        if path is not None:
            lines += ["", f"### Attention of layer {s.heatmap_layer}, head {s.heatmap_head} over a generated passage", "",
                      f"![attention heatmap](plots/{path.name})"]
        return ["\n".join(lines)]

    def heatmap(self, model, text: str, out: Path):
        s = self.cfg.sample
        ids = self.encode(text)[-min(s.heatmap_tokens, self.cfg.model.context):]
        if len(ids) < 2:
            return None
        maps = model.attention_maps(torch.tensor([ids], device=self.device))  # (layers, heads, len, len)
        layer = maps[s.heatmap_layer]
        w = layer[min(s.heatmap_head, layer.size(0) - 1)].float().cpu()
        labels = [self.piece(i) for i in ids]
        return attention_heatmap(w, labels, labels, out, title=f"{self.cfg.model.arch}: layer {s.heatmap_layer}, "
                                 f"head {s.heatmap_head}", x_name="attended token", y_name="query token")

    def piece(self, i: int) -> str:
        p = "\n" if i == EOS and self.tok.kind != "char" else self.tok.id_to_piece(i)  # sentencepiece: EOS = newline
        return {" ": "␣", "\n": "⏎"}.get(p, p)

    def predict(self, model, options):
        text = self.generate(model, options.prompt, options.max_new_tokens, options.temperature, options.top_k,
                             options.top_p, options.seed, options.stop, options.cache)
        print(options.prompt + text)

    def state_dict(self):
        return {"tokenizer": self.tok.state_dict()}

    def load_state_dict(self, state):
        self.tok = tokenizer_from_state(state["tokenizer"])


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams over ``texts`` (Li et al. 2016)."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def tokenizer_fingerprint(tok) -> str:
    h = hashlib.sha1(tok.kind.encode())
    for k, v in sorted(tok.state_dict().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes() if torch.is_tensor(v) else repr(v).encode())
    return h.hexdigest()[:16]
