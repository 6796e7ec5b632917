"""task=generation: adapters, memory-mapped cache, causal masking, cached == uncached generation,
top-k/top-p, perplexity/bpc on a known distribution, memorisation, predict."""

import gzip
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import train as run_training
from attnapps.decoding import sample_next, sample_tokens
from attnapps.errors import DataError
from attnapps_tasks.generation.data import encode_pieces, load_corpus
from attnapps_tasks.generation.model import GPT, GPTConfig, LSTMAttentionConfig, LSTMAttentionLM
from attnapps_tasks.generation.task import GenerationConfig, GenerationTask, distinct_n
from tests.conftest import run_cli


def write(path, content: bytes | str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


TEXT = "".join(f"line {i}: the cat sat on the mat.\n" for i in range(200))


# ---------------------------------------------------------------------------------------- data
def test_single_file_is_split_90_5_5_by_contiguous_chunks(tmp_path):
    texts, policy, _ = load_corpus(str(write(tmp_path / "all.txt", TEXT)))
    assert texts["train"] + texts["valid"] + texts["test"] == TEXT  # contiguous, nothing lost
    assert abs(len(texts["train"]) / len(TEXT) - 0.9) < 0.01 and texts["valid"].startswith("line ")


def test_directory_layout_gzip_and_carved_splits(tmp_path):
    write(tmp_path / "d" / "train.txt", TEXT)
    texts, _, _ = load_corpus(str(tmp_path / "d"))  # no valid/test: cut from the end of train
    assert texts["train"] + texts["valid"] + texts["test"] == TEXT
    write(tmp_path / "g" / "train.txt.gz", gzip.compress(b"abc\n" * 50))
    write(tmp_path / "g" / "valid.txt", "valid text\n")
    write(tmp_path / "g" / "test.txt", "test text\n")
    texts, _, _ = load_corpus(str(tmp_path / "g"))
    assert texts["train"] == "abc\n" * 50 and texts["valid"] == "valid text\n"


def test_wikitext_raw_layout(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / f"wiki.{split}.raw", f" = Heading {split} = \n\n Some {split} text . \n")
    texts, _, _ = load_corpus(str(tmp_path), "wikitext")
    assert texts["valid"] == " = Heading valid = \n\n Some valid text . \n"
    with pytest.raises(DataError, match=r"train.txt: no such file"):
        load_corpus(str(tmp_path))  # the txt layout does not read wikitext names


def test_bad_utf8_names_file_and_line_or_is_skipped(tmp_path):
    path = write(tmp_path / "d" / "train.txt", b"good line\nbad \xff line\nanother\n" * 20)
    with pytest.raises(DataError, match=r"train.txt:2: not valid UTF-8"):
        load_corpus(str(tmp_path / "d"))
    texts, policy, _ = load_corpus(str(tmp_path / "d"), on_error="skip")
    assert policy.skipped == 20 and "bad" not in texts["train"] + texts["valid"] + texts["test"]
    assert path.exists()


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_encoded_corpus_is_prepared_once_and_memory_mapped(tmp_path, kind):
    """Each split's ids in the store equal the whole text encoded at once (the pieces of lines join up
    exactly); the next run with the same files and tokenizer opens the store; a changed file is a miss."""
    write(tmp_path / "d" / "train.txt", TEXT * 3)
    write(tmp_path / "d" / "valid.txt", TEXT[:500])
    write(tmp_path / "d" / "test.txt", TEXT[500:1100].rstrip("\n"))  # a last line without its newline

    def task():
        cfg = OmegaConf.merge(OmegaConf.structured(GenerationConfig), OmegaConf.from_dotlist(
            [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", f"tokenizer.kind={kind}",
             "tokenizer.vocab_size=60", "model.context=16"]))
        t = GenerationTask(cfg)
        t.load_data()
        return t

    first = task()
    texts, _, _ = load_corpus(str(tmp_path / "d"))
    for split, text in texts.items():
        assert isinstance(first.ids[split], np.memmap) and first.ids[split].dtype == np.uint16
        assert first.ids[split].tolist() == first.encode(text) and first.chars[split] == len(text)
        pieces = list(encode_pieces(text, first.encode, lines=7))
        assert len(pieces) > 1 and sum(pieces, []) == first.encode(text)
    second = task()
    assert second.prepared_info["hit"] and not first.prepared_info["hit"]
    assert all(second.ids[s].tolist() == first.ids[s].tolist() for s in texts)
    write(tmp_path / "d" / "valid.txt", TEXT[:400])
    assert not task().prepared_info["hit"]


# ---------------------------------------------------------------------------------------- models
def lstm(**kw):
    return LSTMAttentionConfig(**{"context": 16, "d_model": 24, "layers": 1, "dropout": 0.0, **kw})


MODELS = {
    "gpt": lambda: GPT(GPTConfig(context=16, d_model=32, heads=4, layers=2, dropout=0.0), 30),
    "gpt_sinusoidal": lambda: GPT(GPTConfig(context=16, d_model=32, heads=2, layers=1, dropout=0.0,
                                            positions="sinusoidal"), 30),
    "lstm_general": lambda: LSTMAttentionLM(lstm(attention="general"), 30),
    "lstm_additive": lambda: LSTMAttentionLM(lstm(attention="additive"), 30),
    "lstm_multihead": lambda: LSTMAttentionLM(lstm(attention="multihead", heads=2), 30),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_changing_a_future_token_never_changes_earlier_logits(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = torch.randint(4, 30, (2, 12))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + 5) % 26 + 4
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])  # bit-identical before the change
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # and it does matter from there on


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cached_generation_equals_uncached(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    prompt = [5, 6, 7, 8, 9]
    with torch.no_grad():  # prefill + steps reproduce the full forward
        full = model(torch.tensor([prompt + [10, 11]]))
        state = model.new_state(1)
        first, state = model.step(torch.tensor([prompt]), state)
        rest = []
        for t in (10, 11):
            logits, state = model.step(torch.tensor([[t]]), state)
            rest.append(logits)
    assert torch.allclose(torch.cat([first] + rest, 1), full, atol=1e-5)
    for kw in (dict(temperature=1.0, seed=3), dict(temperature=0.0), dict(temperature=0.9, top_k=5, top_p=0.8, seed=1)):
        cached = sample_tokens(model, prompt, 40, use_cache=True, **kw)  # 45 tokens: the window restarts twice
        uncached = sample_tokens(model, prompt, 40, use_cache=False, **kw)
        assert cached == uncached and len(cached) == 40


def test_stop_condition_ends_generation():
    model = MODELS["gpt"]().eval()
    out = sample_tokens(model, [5], 30, temperature=0.0, should_stop=lambda ids: len(ids) == 4)
    assert len(out) == 4


def test_top_k_and_top_p_only_sample_allowed_tokens():
    logits = torch.log(torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    k2 = sample_next(logits, top_k=2, generator=g)
    assert set(k2.tolist()) == {1, 3}
    p = sample_next(logits, top_p=0.75, generator=g)  # 0.4 + 0.3 = 0.7 < 0.75: needs 0.15 too
    assert set(p.tolist()) == {1, 3, 4}
    assert abs((p == 1).float().mean().item() - 0.4 / 0.85) < 0.04  # renormalised over the nucleus


# ---------------------------------------------------------------------------------------- metrics
def tiny_cfg(path, *extra):
    overrides = [f"data.path={path}", "model.context=16", "model.d_model=32", "model.layers=1", "model.heads=2",
                 "model.dropout=0", "trainer.max_minutes=0", "trainer.batch_size=8", "trainer.progress=false",
                 "trainer.eval_every=0", "sample.max_new_tokens=20", "sample.heatmap_tokens=12", *extra]
    return OmegaConf.merge(OmegaConf.structured(GenerationConfig), OmegaConf.from_dotlist(overrides))


def test_perplexity_and_bpc_on_a_known_distribution(tmp_path):
    """A model whose logits are all zero predicts uniformly over V symbols: perplexity V, bpc log2 V."""
    cfg = tiny_cfg(write(tmp_path / "c.txt", TEXT), f"data.cache_dir={tmp_path / 'cache'}", "model.arch=transformer")
    task = GenerationTask(cfg)
    task.load_data()
    model = task.build_model()
    with torch.no_grad():
        model.embedding.weight.zero_()  # tied with the output layer: every logit is 0
    v = task.tok.vocab_size
    out = task.evaluate(model, "valid", final=True).metrics
    assert out["perplexity"] == pytest.approx(v, rel=1e-5)
    assert out["bpc"] == pytest.approx(math.log2(v), rel=1e-5)  # char tokenizer: one character per token
    total, count = task.nll(model, "valid")
    assert count == len(task.ids["valid"]) - 1  # every token after the first is scored once
    assert total == pytest.approx(count * math.log(v), rel=1e-5)


def test_distinct_n():
    assert distinct_n(["a b a b", "a b c"], 1) == pytest.approx(3 / 7)
    assert distinct_n(["a b a b", "a b c"], 2) == pytest.approx(3 / 5)


# ---------------------------------------------------------------------------------------- end to end
SHORT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture(scope="module", params=["transformer", "lstm_attention"])
def memorised(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    for split in ("train", "valid", "test"):
        write(root / "data" / f"{split}.txt", SHORT)
    cfg = tiny_cfg(root / "data", f"data.cache_dir={root / 'cache'}", f"model.arch={request.param}",
                   "trainer.max_epochs=60", "trainer.lr=1e-2", "trainer.warmup_steps=10", "trainer.weight_decay=0")
    metrics = run_training(cfg, root / "run", GenerationTask)
    return root, metrics


def test_tiny_model_memorises_a_short_text(memorised):
    root, metrics = memorised
    assert metrics["test.bpc"] < 0.2 and metrics["generate.tokens_per_sec_cached"] > 0
    report = (root / "run" / "report.md").read_text()
    assert "plots/attention_heatmap.png" in report and "distinct-1" in report


@pytest.mark.slow
def test_predict_cli_round_trip(memorised):
    root, _ = memorised
    r = run_cli("task=generation", f"run={root / 'run'}", "prompt=the quick", "temperature=0", "max_new_tokens=40",
                "stop=dog.", module="attnapps.predict")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "the quick brown fox jumps over the lazy dog."


@pytest.mark.slow
def test_tokenizer_shorthand_and_bad_choice_are_one_line_errors(tmp_path):
    write(tmp_path / "c.txt", TEXT)
    r = run_cli("task=generation", "tokenizer=bogus", f"data.path={tmp_path / 'c.txt'}",
                f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and lines == ["error: bad value for config key 'tokenizer.kind': 'bogus'; choose one of char, sentencepiece"]


def test_sentencepiece_round_trip_keeps_newlines(tmp_path):
    cfg = tiny_cfg(write(tmp_path / "c.txt", TEXT), f"data.cache_dir={tmp_path / 'cache'}", "tokenizer.kind=sentencepiece",
                   "tokenizer.vocab_size=60")
    task = GenerationTask(cfg)
    task.load_data()
    text = "line 3: the cat sat on the mat.\nline 4: the mat.\n"
    assert task.decode(task.encode(text)) == text
    assert len(task.ids["train"]) < len(TEXT) * 0.9  # fewer tokens than characters


def test_trivial_baseline_is_a_unigram_model_of_the_training_characters(tmp_path):
    """By hand over the characters: p(c) = (count in train + 1) / (train characters + V); bits of every valid
    character after the first, over the valid characters (char tokens: one character each)."""
    from collections import Counter

    cfg = tiny_cfg(write(tmp_path / "c.txt", TEXT), f"data.cache_dir={tmp_path / 'cache'}", "model.arch=transformer")
    task = GenerationTask(cfg)
    task.load_data()
    v, train, valid = task.tok.vocab_size, task.decode(list(task.ids["train"])), task.decode(list(task.ids["valid"]))
    counts = Counter(train)
    bits = -sum(math.log2((counts[c] + 1) / (len(train) + v)) for c in valid[1:])
    out = task.trivial_baseline("valid")
    assert out["bpc"] == pytest.approx(bits / (len(valid) - 1), rel=1e-6)
    assert out["perplexity"] == pytest.approx(2 ** (bits / (len(valid) - 1)), rel=1e-6)


@pytest.mark.parametrize("arch, attention", [("transformer", None), ("lstm_attention", "general"),
                                             ("lstm_attention", "multihead")])
def test_attention_maps_are_the_recorded_weights_of_each_layer(arch, attention):
    """``attention_maps`` is a view over ``record``: equal to the weights each layer returns when asked."""
    from attnapps_tasks.generation.model import ARCHS

    cls = ARCHS[arch]
    cfg = cls.config_class(**({"attention": attention} if attention else {}))
    cfg.d_model, cfg.layers, cfg.heads, cfg.context, cfg.dropout = 32, 2, 4, 64, 0.0
    torch.manual_seed(0)
    model = cls(cfg, 50).eval()
    ids = torch.randint(0, 50, (1, 20))
    with torch.no_grad():
        if arch == "transformer":
            x, expected = model._embed(ids), []
            for block in model.blocks:
                x, w = block(x, is_causal=True, need_weights=True)  # (1, heads, len, len)
                expected.append(w[0])
            expected = torch.stack(expected)
        else:
            h, _ = model.lstm(model.embedding(ids))
            _, w = model.attention(h, h, is_causal=True, need_weights=True)
            expected = model.attention.per_head(w)  # (1 layer, heads, len, len)
    got = model.attention_maps(ids)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5)  # rows of probabilities
