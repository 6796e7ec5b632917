"""``task=generation``: train a causal language model, report perplexity and bits per character, and
sample from it with a key/value cache.

    python -m attnapps.run task=generation [model.arch=lstm_attention] [tokenizer=sentencepiece] [data.path=DIR|FILE]
    python -m attnapps.predict task=generation run=RUN_DIR prompt="It is a truth" max_new_tokens=200
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from attnapps.export.graphs import ExampleInputs, random_ids
from attnapps.config import arch_config, arch_keys, check_heads
from attnapps.data import TokenizerState, fit_tokenizer, hub
from attnapps.data.files import ErrorPolicy
from attnapps.data.prepared import id_dtype
from attnapps.data.vocab import EOS
from attnapps.decoding import StepRules, sample_tokens
from attnapps.errors import ConfigError, DataError
from attnapps.explorer import example, view
from attnapps.losses import sequence_loss
from attnapps.metrics import bits_per_char, perplexity
from attnapps.plots import attention_heatmap
from attnapps.report import section
from attnapps.task import Diagnoser, Evaluation, Explainer, Reporter, Task, register_task

from . import diagnostics, outputs
from .config import GenerationConfig, GenerationPredict
from .data import Windows, corpus_files, encode_pieces, load_corpus
from .model import ARCHS


@register_task("generation")
class GenerationTask(Task, Reporter, Explainer, Diagnoser):
    metric_keys, run_files = outputs.METRIC_KEYS, outputs.RUN_FILES  # what a run writes (attnapps.outputs)
    config_class, state_class = GenerationConfig, TokenizerState
    aliases = {"tokenizer": "tokenizer.kind"}  # `tokenizer=X` is short for `tokenizer.kind=X`
    predict_config_class = GenerationPredict
    primary_metric = "bpc"
    higher_is_better = False
    count_unit = "tokens"
    # Per architecture: width and dropout when model.d_model=0 / model.dropout<0 (chosen on valid, README).
    study_presets = {"quick": ["sample.max_new_tokens=40"]}  # attnapps.study: what keeps a quick look quick
    secondary_metrics, study_figure = ("perplexity",), "attention_heatmap.png"  # what attnapps.study shows of this task

    tok = property(lambda self: self.state.tok if self.state else None)

    @classmethod
    def resolve_config(cls, cfg) -> None:
        """``model.d_model=0`` and ``model.dropout<0`` become the chosen architecture's values."""
        m = cfg.model
        a = ARCHS[str(m.arch)].defaults
        if m.d_model <= 0:
            m.d_model = a["d_model"]
        if m.dropout < 0:
            m.dropout = a["dropout"]

    @classmethod
    def check_config(cls, cfg):
        super().check_config(cfg)
        m, s = cfg.model, cfg.sample
        check_heads(m, m.d_model or ARCHS[str(m.arch)].defaults["d_model"], "model.d_model")
        if any(not 0 <= t < 100 for t in s.temperatures):
            raise ConfigError(f"bad value for config key 'sample.temperatures': {list(s.temperatures)} "
                              "must each be in [0, 100)")

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
    def write_hub(self, datasets, columns, folder):
        """``data.hf=``: each split as ``{train,valid,test}.txt``, one row after another (a row that does not
        end a line gets a line break: WikiText's rows are its lines)."""
        for split, dataset in datasets.items():
            with open(folder / f"{split}.txt", "w", encoding="utf-8") as f:
                for row in hub.rows(dataset, {"text": columns.get("text", "text")}, self.cfg.data.hf):
                    text = str(row["text"] or "")
                    f.write(text if text.endswith("\n") else text + "\n")
        return {"format": "txt"}

    def build_data(self):
        """Each split's token ids from the prepared store (:meth:`prepare_data`: read, tokenizer fitted,
        encoded once per data files and tokenizer options), memory-mapped, in windows of the context."""
        d, t = self.cfg.data, self.cfg.tokenizer
        options = {"format": str(d.format), "on_error": str(d.on_error),
                   "tokenizer": OmegaConf.to_container(t, resolve=True, enum_to_str=True)}
        store = self.prepared(corpus_files(d.path, d.format), options, self.prepare_data, d.cache_dir)
        notes = store.notes
        self.source, self.chars = notes["source"], dict(notes["chars"])
        self.policy = ErrorPolicy(d.on_error)
        self.policy.skipped, self.policy.examples = notes["skipped"], list(notes["skip_examples"])
        self.ids = {s: store.column(f"{s}.ids") for s in self.chars}
        self.train_counts = torch.from_numpy(np.array(store.column("train.counts")))  # (vocab,)
        ctx = self.cfg.model.context
        if len(self.ids["train"]) < ctx + 1:
            raise DataError(self.source, None, f"the training text has {len(self.ids['train'])} tokens; "
                            f"model.context={ctx} needs at least {ctx + 1} (give more text or a smaller model.context)")
        return {s: Windows(self.ids[s], ctx) for s in self.chars}

    def prepare_data(self, writer) -> None:
        """Read the texts (:func:`.data.load_corpus`), fit the tokenizer on train (unless a checkpoint gave
        it) and write each split's ids, encoded in pieces of lines (:func:`.data.encode_pieces`)."""
        d, t = self.cfg.data, self.cfg.tokenizer
        texts, policy, source = load_corpus(d.path, d.format, d.on_error)

        def fit():  # on the training text (unless a checkpoint gave the tokenizer: resume, predict)
            lines = [texts["train"]] if t.kind == "char" else texts["train"].split("\n")
            return TokenizerState(fit_tokenizer(t.kind, lines, t.vocab_size, t.model_type))

        self.fitted(fit)
        dtype = id_dtype(self.tok.vocab_size)
        for split in list(texts):
            pieces = [np.asarray(ids, dtype=dtype) for ids in encode_pieces(texts[split], self.encode)]
            ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
            writer.array(f"{split}.ids", ids)
            if split == "train":  # the unigram baseline's counts: no pass over the corpus in a run
                writer.array("train.counts", np.bincount(ids, minlength=self.tok.vocab_size).astype(np.int64))
            del ids, pieces
        writer.notes.update(source=source, chars={s: len(x) for s, x in texts.items()}, skipped=policy.skipped,
                            skip_examples=policy.examples)

    def collate(self, examples):
        return {"ids": torch.stack(examples)}  # (batch, context + 1)

    # ------------------------------------------------------------------ model
    def build_model(self):
        model = ARCHS[str(self.cfg.model.arch)]
        return model(arch_config(self.cfg.model, model.config_class), self.tok.vocab_size)

    def loss(self, model, batch):
        ids = batch["ids"]  # (batch, context + 1)
        return sequence_loss(model(ids[:, :-1]), ids[:, 1:])  # logits (batch, context, vocab)

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
            loss, n = sequence_loss(model(x[:, :-1]), x[:, 1:])  # logits (b, len, vocab)
            total += float(loss)
            count += int(n)

        for start in range(0, len(windows), 64):
            score(torch.stack([windows[i] for i in range(start, min(start + 64, len(windows)))]))
        tail = len(windows) * ctx  # the last, partial window
        if tail < n - 1:
            score(torch.from_numpy(ids[tail:n].astype("int64")).unsqueeze(0))
        return total, count

    def evaluate(self, model, split, final=False):
        total, count = self.nll(model, split, 0 if final else self.cfg.sample.eval_tokens)
        chars_per_token = self.chars[split] / max(1, len(self.ids[split]))
        return Evaluation({"perplexity": perplexity(total, count), "bpc": bits_per_char(total, count * chars_per_token)})

    def trivial_baseline(self, split):
        """A unigram model of the training tokens (add-one), scored as :meth:`evaluate` scores the model:
        every token but the first, bits over the characters of the split."""
        counts = self.train_counts  # (vocab,), counted when the data was prepared
        log_p = torch.log((counts + 1.0) / (counts.sum() + self.tok.vocab_size))
        ids = torch.as_tensor(self.ids[split].astype("int64"))
        total, count = float(-log_p[ids[1:]].sum()), max(0, len(ids) - 1)
        chars_per_token = self.chars[split] / max(1, len(ids))
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
        return {f"generate.tokens_per_sec_{k}": v for k, v in self.measure_generation(model).items()}

    def probes(self, model, indices):
        return diagnostics.probes(self, model, indices)

    # ------------------------------------------------------------------ report and predict
    def generate(self, model, prompt: str, max_new_tokens: int, temperature: float, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, stop: str = "", cache: bool = True, options=None) -> str:
        """``options``: predict options whose ``no_repeat_ngram`` / ``repetition_penalty`` apply
        (:class:`attnapps.decoding.StepRules`)."""
        model.eval()
        should_stop = (lambda ids: stop in self.decode(ids)) if stop else None
        ids = sample_tokens(model, self.encode(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                            use_cache=cache, should_stop=should_stop, device=self.device, rules=StepRules.of(options))
        text = self.decode(ids)
        return text[: text.index(stop) + len(stop)] if stop and stop in text else text

    def report(self, model, run_dir, results):
        run_dir, s, m = Path(run_dir), self.cfg.sample, self.cfg.model
        lines = section("Generation", [
            f"data: {self.source}; tokens train {len(self.ids['train']):,}, valid {len(self.ids['valid']):,}, "
            f"test {len(self.ids['test']):,}; characters per token (test) "
            f"{self.chars['test'] / max(1, len(self.ids['test'])):.3f}",
            f"lines skipped (not UTF-8): {self.policy.skipped}",
            f"tokenizer: {self.tok.kind}, vocabulary {self.tok.vocab_size}",
            f"model: {m.arch}, context {m.context}, width {m.d_model}, {m.layers} layers"
            + (f", attention {m.attention}" if "attention" in arch_keys(m) else f", {m.heads} heads")])
        run = results.get("run", {})  # the run's final metrics, with extra_metrics' generation speeds
        cached, uncached = run.get("generate.tokens_per_sec_cached"), run.get("generate.tokens_per_sec_uncached")
        if cached and uncached:
            lines.append(f"- generation: {cached:.0f} tokens/s with the key/value cache, "
                         f"{uncached:.0f} tokens/s without ({cached / uncached:.1f}x)")
        lines += ["", "### Samples", ""]
        samples = []
        for temp in s.temperatures:
            text = self.generate(model, s.prompt, s.max_new_tokens, temp, s.top_k, s.top_p, s.seed)
            samples.append(text)
            lines += [f"**temperature {temp}** (top-k {s.top_k or 'off'}, top-p {s.top_p}, seed {s.seed}):", "",
                      "```", (s.prompt + text).replace("```", "'''"), "```", ""]
        d1, d2 = distinct_n(samples, 1), distinct_n(samples, 2)
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

    def export_inputs(self, model, batch: int, length: int, generator):
        """ONNX export (:mod:`attnapps.export.graphs`): random ids, a prompt per row."""
        return ExampleInputs({"ids": random_ids(batch, length, self.tok.vocab_size, generator, low=0)[0][:, :length - batch + 1]})

    serve_options = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
    serve_limits = {"max_new_tokens": "max_new_tokens"}  # what attnapps.serve caps (its max_* keys)
    infer_batches = False  # prompts are sampled one after another: batching them only adds waiting
    explore_tokens = 96  # the attention of the last N tokens of a passage: (layers, heads, N, N) numbers

    def count_tokens(self, text):
        return len(self.encode(text))

    @torch.no_grad()
    def infer(self, model, inputs, options):
        """Prompts -> their continuations, with every layer's and head's causal attention over the last
        :attr:`explore_tokens` tokens of prompt + continuation."""
        out = []
        for prompt in inputs:
            text = self.generate(model, prompt, options.max_new_tokens, options.temperature, options.top_k,
                                 options.top_p, options.seed, options.stop, options.cache, options)
            out.append(self.explain_text(model, prompt, text))
        return out

    def explain_text(self, model, prompt: str, text: str) -> dict:
        ids = self.encode(prompt + text)[-min(self.explore_tokens, self.cfg.model.context):]
        tokens = [self.piece(i) for i in ids]
        views = []
        if len(ids) >= 1 and hasattr(model, "attention_maps"):  # (an ONNX export has no maps to show)
            maps = model.attention_maps(torch.tensor([ids], device=self.device))  # (layers, heads, len, len)
            views = [view(f"layer {n + 1}", "text", "text", m) for n, m in enumerate(maps)]
        cut = len(self.encode(prompt + text)) - len(ids)
        return example({"text": tokens}, views, text=text, title=f"prompt: {prompt[:100]!r}"
                       + (f" (attention over the last {len(ids)} tokens)" if cut > 0 else ""))

    def explore(self, model, results, n):
        s = self.cfg.sample
        return [self.explain_text(model, s.prompt, self.generate(model, s.prompt, s.max_new_tokens, temp, s.top_k,
                                                                 s.top_p, s.seed)) for temp in s.temperatures[:n]]

    def predict(self, model, options):
        text = self.generate(model, options.prompt, options.max_new_tokens, options.temperature, options.top_k,
                             options.top_p, options.seed, options.stop, options.cache, options)
        print(options.prompt + text)



def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams over ``texts`` (Li et al. 2016)."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))
