"""The prepared store (attnapps/data/prepared.py): columns read back exactly, keys follow content and
options, building is atomic and happens once when processes race for it."""

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from attnapps.data import prepared


def build_into(root, key, columns: dict, state=None):
    def build(w):
        for name, (kind, values, vocab) in columns.items():
            if kind == "ids":
                w.ragged(name, values, vocab)
            elif kind == "text":
                w.texts(name, values)
            else:
                w.array(name, values)
        if state is not None:
            w.state(state)
        w.notes["count"] = 3
    return prepared.open_or_build(root, key, build)


@given(st.lists(st.lists(st.integers(0, 70000), max_size=12), max_size=30),
       st.lists(st.text(max_size=15), min_size=0, max_size=30))
def test_columns_read_back_exactly(tmp_path_factory, seqs, texts):
    root = tmp_path_factory.mktemp("store")
    store, info = build_into(root, "k", {"a": ("ids", seqs, 70001), "t": ("text", texts, 0),
                                         "y": ("array", list(range(len(texts))), 0)})
    assert not info["hit"]
    a, t = store.column("a"), store.column("t")
    assert len(a) == len(seqs) and [a[i] for i in range(len(a))] == seqs and a[:] == seqs
    assert list(a.lengths) == [len(s) for s in seqs]
    assert a.dtype == np.int32  # a vocabulary over 65,536 ids needs 32 bits
    assert t[:] == texts
    assert list(store.column("y")) == list(range(len(texts)))
    if seqs:
        assert a[-1] == seqs[-1]
    for lo, hi in ((1, 3), (len(seqs) // 2, len(seqs)), (2, 1), (-3, None)):  # runs read in two reads each
        assert a[lo:hi] == seqs[lo:hi] and t[lo:hi] == texts[lo:hi] and a[lo:hi:2] == seqs[lo:hi:2]
    with pytest.raises(IndexError):
        a[len(seqs)]
    chain = prepared.Chain(t, texts, t)
    assert list(chain) == texts * 3 and chain[1:len(texts) + 2] == (texts * 3)[1:len(texts) + 2]
    if texts:
        assert chain[-1] == texts[-1] and chain[len(texts)] == texts[0]
    table = prepared.Table(a, a)
    assert table[:2] == [(s, s) for s in seqs[:2]]


def test_small_vocabularies_take_two_bytes_a_token_and_writes_are_chunked(tmp_path, monkeypatch):
    monkeypatch.setattr(prepared, "CHUNK", 7)  # flush after every few tokens: the file is the concatenation
    seqs = [[i, i + 1, 65535] for i in range(50)]
    store, _ = build_into(tmp_path, "k", {"a": ("ids", seqs, 65536)})
    col = store.column("a")
    assert col.dtype == np.uint16 and (tmp_path / "k" / "a.ids").stat().st_size == 2 * 150
    assert col[:] == seqs


def test_columns_survive_pickling_and_forking(tmp_path):
    """A DataLoader worker gets the column by pickling (spawn) or by fork: it opens its own file handles."""
    import pickle

    store, _ = build_into(tmp_path, "k", {"a": ("ids", [[1, 2], [3]], 10), "t": ("text", ["x", "yz"], 0)})
    a = store.column("a")
    assert a[1] == [3]  # opened here
    again = pickle.loads(pickle.dumps(a))
    assert again[:] == [[1, 2], [3]] and again.files._open[0] == os.getpid()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_read_in_child, (a,)) == [[1, 2], [3]]


def _read_in_child(column):
    return column[:]


def test_a_second_open_is_a_hit_with_the_state_and_notes(tmp_path):
    state = {"tokenizer": {"kind": "word", "itos": ["<pad>", "a"]}, "w": torch.arange(3.0)}
    _, first = build_into(tmp_path, "k", {"a": ("ids", [[1, 2]], 10)}, state)
    calls = []
    store, second = prepared.open_or_build(tmp_path, "k", lambda w: calls.append(w))
    assert not first["hit"] and second["hit"] and calls == []  # nothing rebuilt
    assert second["prepared_seconds"] == pytest.approx(first["seconds"])
    assert store.notes == {"count": 3} and store.column("a")[0] == [1, 2]
    loaded = store.state()
    assert loaded["tokenizer"] == state["tokenizer"] and torch.equal(loaded["w"], state["w"])
    assert "cache hit" in prepared.describe(second) and "cache miss" in prepared.describe(first)


def test_what_is_fitted_on_the_store_is_kept_per_options(tmp_path, monkeypatch):
    """Store.derived: built once per options, then loaded (the same values); other options build again; a
    damaged file is rebuilt; a read-only store builds every time and writes nothing."""
    store, _ = build_into(tmp_path, "k", {"a": ("ids", [[1, 2]], 10)})
    calls = []

    def fit(scale):
        def build():
            calls.append(scale)
            return {"w": torch.arange(4.0) * scale, "keys": [1, 2], "valid": {0.5: 0.75}}
        return build

    first, a = store.derived("fit", {"c": 1}, fit(1))
    again, b = store.derived("fit", {"c": 1}, fit(99))
    assert calls == [1] and not a["hit"] and b["hit"] and b["seconds"] == pytest.approx(a["seconds"])
    assert torch.equal(again["w"], torch.arange(4.0)) and again["keys"] == [1, 2] and again["valid"] == {0.5: 0.75}
    other, c = store.derived("fit", {"c": 2}, fit(2))
    assert calls == [1, 2] and not c["hit"] and torch.equal(other["w"], torch.arange(4.0) * 2)
    [saved] = [p for p in (store.directory / "derived").glob("fit-*.pt")
               if torch.equal(torch.load(p, weights_only=True)["value"]["w"], torch.arange(4.0) * 2)]
    saved.write_bytes(b"not a checkpoint")
    rebuilt, d = store.derived("fit", {"c": 2}, fit(3))
    assert calls == [1, 2, 3] and not d["hit"] and torch.equal(rebuilt["w"], torch.arange(4.0) * 3)
    assert [p.name for p in (store.directory / "derived").iterdir() if p.suffix == ".tmp"] == []
    before = sorted((store.directory / "derived").iterdir())

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(prepared, "_locked", read_only)  # (root may write anywhere: no chmod test)
    four, _ = store.derived("fit", {"c": 3}, fit(4))
    five, _ = store.derived("fit", {"c": 3}, fit(5))
    assert calls[-2:] == [4, 5] and torch.equal(five["w"], torch.arange(4.0) * 5)
    assert sorted((store.directory / "derived").iterdir()) == before


def test_rows_read_by_position_equal_the_array(tmp_path):
    """prepared.Rows over a raw file: every kind of index gives the array's rows, as tensors, in any
    process (pickled for a DataLoader worker, or after a fork)."""
    array = np.random.default_rng(0).standard_normal((37, 4, 3)).astype(np.float16)
    (tmp_path / "a.bin").write_bytes(array.tobytes())
    rows = prepared.Rows(tmp_path / "a.bin", "float16", array.shape)
    assert len(rows) == 37 and rows.dim() == 3 and rows.size(1) == 4 and rows.shape == (37, 4, 3)
    assert rows.dtype == torch.float16 and rows.size() == torch.Size([37, 4, 3])
    assert torch.equal(rows[5], torch.from_numpy(array[5])) and torch.equal(rows[-1], torch.from_numpy(array[-1]))
    assert torch.equal(rows[3:30], torch.from_numpy(array[3:30])) and torch.equal(rows[:], torch.from_numpy(array))
    pick = [7, 0, 36, 7]
    assert torch.equal(rows[torch.tensor(pick)], torch.from_numpy(array[pick]))
    assert torch.equal(rows[np.array(pick)], torch.from_numpy(array[pick])) and rows[[]].shape == (0, 4, 3)
    with pytest.raises(IndexError):
        rows[37]
    import pickle

    again = pickle.loads(pickle.dumps(rows))
    assert torch.equal(again[2:4], torch.from_numpy(array[2:4]))
    r, w = os.pipe()
    if (pid := os.fork()) == 0:  # the child reads through its own handle
        os.write(w, bytes([int(torch.equal(rows[pick], torch.from_numpy(array[pick])))]))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"\x01"
    (tmp_path / "a.bin").write_bytes(array[:10].tobytes())  # a file shorter than it says
    with pytest.raises(EOFError, match="shorter than its 37 rows"):
        prepared.Rows(tmp_path / "a.bin", "float16", array.shape)[20]


def test_a_failed_build_leaves_no_store_and_no_temporary_files(tmp_path):
    def build(w):
        w.ragged("a", [[1]], 10)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        prepared.open_or_build(tmp_path, "k", build)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    store, info = build_into(tmp_path, "k", {"a": ("ids", [[4]], 10)})  # the next run builds it whole
    assert not info["hit"] and store.column("a")[:] == [[4]]


def test_keys_follow_content_and_options_not_paths(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "train.tsv").write_text("x\ty\n")
    (b / "train.tsv").write_text("x\ty\n")
    key = prepared.store_key("t", [a / "train.tsv"], {"vocab": 8})
    assert prepared.store_key("t", [b / "train.tsv"], {"vocab": 8}) == key  # the same bytes elsewhere
    assert prepared.store_key("t", [a / "train.tsv"], {"vocab": 9}) != key  # another option
    (b / "train.tsv").write_text("x\tz\n")
    assert prepared.store_key("t", [b / "train.tsv"], {"vocab": 8}) != key  # other bytes


def test_fingerprint_by_content():
    a = {"tok": {"model": torch.tensor([1, 2], dtype=torch.uint8)}, "labels": ["x", "y"]}
    b = {"labels": ["x", "y"], "tok": {"model": torch.tensor([1, 2], dtype=torch.uint8)}}
    assert prepared.fingerprint(a) == prepared.fingerprint(b)
    b["tok"]["model"][1] = 3
    assert prepared.fingerprint(a) != prepared.fingerprint(b)
    assert prepared.fingerprint({"labels": ["x", "y"]}) != prepared.fingerprint({"labels": ["y", "x"]})


def _race(root: str, log: str, barrier) -> None:
    def build(w):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        w.ragged("a", [[os.getpid() % 1000]], 1000)

    barrier.wait()
    store, info = prepared.open_or_build(root, "k", build)
    with open(log + ".seen", "a") as f:
        f.write(json.dumps([store.column("a")[0], info["hit"]]) + "\n")


def test_processes_racing_for_one_store_build_it_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, log = ctx.Barrier(3), str(tmp_path / "log")
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "root"), log, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(Path(log).read_text().split()) == 1  # one builder
    seen = [json.loads(line) for line in Path(log + ".seen").read_text().splitlines()]
    assert len({tuple(s[0]) for s in seen}) == 1 and sorted(s[1] for s in seen) == [False, True, True]
