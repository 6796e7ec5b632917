"""Tokenizers round-trip; the batch sampler covers every example once, resumes and shards exactly."""

from pathlib import Path

import pytest
import torch

from attnapps.data import (
    BucketBatchSampler, CharTokenizer, SentencePieceTokenizer, Vocab, WordTokenizer, pad_batch, tokenizer_from_state,
)

TEXTS = ["It is a truth universally acknowledged.", "A single man in possession of a good fortune,",
         "must be in want of a wife!"] * 20


def test_char_and_word_round_trip_and_state():
    ch = CharTokenizer().fit(TEXTS)
    assert ch.decode(ch.encode(TEXTS[0])) == TEXTS[0]
    assert tokenizer_from_state(ch.state_dict()).encode("truth") == ch.encode("truth")
    w = WordTokenizer().fit(TEXTS)
    assert w.split("Don't stop, Mr. Darcy!") == ["don't", "stop", ",", "mr", ".", "darcy", "!"]
    assert w.decode(w.encode("a good fortune , must")) == "a good fortune, must"
    assert w.encode("zebra") == [w.unk_id]
    assert tokenizer_from_state(w.state_dict()).vocab.itos == w.vocab.itos


def test_vocab_specials_min_freq_and_size():
    v = Vocab.build([["b", "a", "a", "c"], ["a", "b"]], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert v.decode([2, 4, 5, 3, 4]) == ["a", "b"]
    assert len(Vocab.build([["a", "b", "c"]], max_size=5)) == 5


def test_sentencepiece_round_trip_through_state():
    sp = SentencePieceTokenizer().fit(TEXTS, vocab_size=60, model_type="bpe")
    ids = sp.encode(TEXTS[1])
    assert sp.decode(ids) == TEXTS[1]
    assert sp.decode([sp.bos_id] + ids + [sp.eos_id, 7, 8]) == TEXTS[1]  # stops at EOS
    again = tokenizer_from_state(sp.state_dict())
    assert again.encode(TEXTS[1]) == ids and again.vocab_size == sp.vocab_size
    assert sp.pad_id == 0 and sp.id_to_piece(sp.eos_id) == "</s>"


def test_sampler_covers_each_example_once_and_is_deterministic():
    lengths = [int(x) for x in torch.randint(1, 50, (103,))]
    s = BucketBatchSampler(103, 8, lengths, seed=3)
    s.set_epoch(2)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert batches == list(s)
    s.set_epoch(3)
    assert list(s) != batches
    s.set_epoch(2, start_batch=5)
    assert list(s) == batches[5:]


def test_sampler_max_tokens_and_ddp_shards():
    lengths = [int(x) for x in torch.randint(1, 30, (200,))]
    s = BucketBatchSampler(200, 0, lengths, max_tokens=120, seed=0)
    for b in s:
        assert len(b) * max(lengths[i] for i in b) <= 120 or len(b) == 1
    full = BucketBatchSampler(200, 16, lengths, seed=0)
    ranks = [BucketBatchSampler(200, 16, lengths, seed=0, rank=r, world_size=2) for r in (0, 1)]
    for g, a, b in zip(full, *ranks):
        assert sorted(a + b) == sorted(g)


def reference_batches(n, batch_size, lengths, max_tokens, seed, epoch, drop_last=False, world_size=1):
    """The sampler's rule written out example by example: a seeded permutation, sorted by length inside
    chunks of 100 batches, packed greedily, then the batches shuffled with the same generator."""
    g = torch.Generator().manual_seed(seed + 7919 * epoch)
    order = torch.randperm(n, generator=g).tolist()
    if lengths is not None:
        chunk = 100 * max(batch_size, 1)
        order = [i for start in range(0, n, chunk)
                 for i in sorted(order[start:start + chunk], key=lambda i: lengths[i])]  # sorted() is stable
    batches, current, longest = [], [], 0
    for i in order:
        length = 1 if lengths is None else lengths[i]
        if max_tokens > 0:
            if current and max(longest, length) * (len(current) + 1) > max_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, length)
        else:
            current.append(i)
            if len(current) == batch_size:
                batches.append(current)
                current = []
    if current and not drop_last:
        batches.append(current)
    batches = [b for b in batches if len(b) >= world_size]
    if lengths is not None:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
    return batches


@pytest.mark.parametrize("batch_size,max_tokens,drop_last", [(8, 0, False), (8, 0, True), (0, 90, False), (5, 0, False)])
def test_sampler_equals_the_rule_written_example_by_example(batch_size, max_tokens, drop_last):
    """Vectorised (one tensor split for fixed-size batches, one list for token-based packing), once per
    epoch: the same batches as the plain rule, whether lengths come as a list or as a numpy array."""
    import numpy as np

    lengths = [int(x) for x in torch.randint(1, 30, (1003,), generator=torch.Generator().manual_seed(5))]
    for given in (lengths, np.asarray(lengths, dtype=np.int64)):
        s = BucketBatchSampler(1003, batch_size, given, max_tokens=max_tokens, seed=4, drop_last=drop_last)
        for epoch in (0, 3):
            s.set_epoch(epoch)
            want = reference_batches(1003, batch_size, lengths, max_tokens, 4, epoch, drop_last)
            assert list(s) == want and len(s) == len(want)
            s.set_epoch(epoch, start_batch=7)
            assert list(s) == want[7:] and len(s) == len(want) - 7


def test_pad_batch():
    ids, lengths = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_cache_root_prefers_the_key_then_the_environment(tmp_path, monkeypatch):
    from attnapps.data.files import cache_root

    monkeypatch.setenv("ATTNAPPS_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(str(tmp_path / "key")) == tmp_path / "key"
    monkeypatch.delenv("ATTNAPPS_CACHE")
    assert cache_root().parts[-2:] == (".cache", "attnapps")


def test_data_path_expands_the_home_directory(tmp_path, monkeypatch):
    from attnapps.data.files import data_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir("~/corpus/train.txt", "generation") == tmp_path / "corpus" / "train.txt"
    assert data_dir("relative/dir", "generation") == Path("relative/dir")
