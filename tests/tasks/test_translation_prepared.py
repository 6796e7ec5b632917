"""task=translation on prepared data: the store holds exactly what reading and encoding the files gives,
is found again for the same data and options (not for other ones), and drives runs from the command line."""

import json

import pytest
from omegaconf import OmegaConf

from attnapps.errors import DataError
from attnapps_tasks.translation.data import load_pairs
from attnapps_tasks.translation.task import TranslationConfig, TranslationTask
from tests.conftest import run_cli

PAIRS = [("the cat sleeps .", "die katze schläft ."), ("a dog runs home .", "ein hund läuft nach hause ."),
         ("the small house .", "das kleine haus ."), ("we read a book .", "wir lesen ein buch ."),
         ("she drinks water .", "sie trinkt wasser .")]


def corpus(directory, n=60, valid=True, long_every=7):
    """``n`` training pairs (every ``long_every``-th one far longer than ``data.max_len=40`` allows)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        s, t = PAIRS[i % len(PAIRS)]
        if i % long_every == 3:
            s, t = " ".join([s] * 10), " ".join([t] * 10)
        lines.append(f"{s} {i}\t{t} {i}")
    (directory / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "test.tsv").write_text("\n".join(f"{s}\t{t}" for s, t in PAIRS) + "\n", encoding="utf-8")
    if valid:
        (directory / "valid.tsv").write_text("\n".join(f"{t}\t{s}" for s, t in PAIRS) + "\n", encoding="utf-8")


def task_for(directory, cache, *more):
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist(
        [f"data.path={directory}", f"data.cache_dir={cache}", "tokenizer.vocab_size=60", "data.max_len=40", *more]))
    task = TranslationTask(cfg)
    task.load_data()
    return task


def test_the_store_holds_what_reading_and_encoding_the_files_gives(tmp_path):
    corpus(tmp_path / "d")
    task = task_for(tmp_path / "d", tmp_path / "c")
    assert task.prepared_info["hit"] is False
    splits, _ = load_pairs(str(tmp_path / "d"), "", "")
    src, tgt = task.src_tok, task.tgt_tok
    for split, pairs in splits.items():  # the reference: encode pair by pair, drop long training pairs
        want = [(src.encode(s), tgt.encode(t)) for s, t in pairs]
        if split == "train":
            want = [(s, t) for s, t in want if 0 < len(s) <= 40 and 0 < len(t) <= 40]
        assert task.datasets[split][:] == want
        assert task.sources[split][:] == [s for s, _ in pairs] and task.refs[split][:] == [t for _, t in pairs]
        assert list(task.lengths(split)) == [max(len(s), len(t)) + 1 for s, t in want]
    assert task.filtered == len(splits["train"]) - len(task.datasets["train"]) > 0
    assert task.state.channel is not None  # decode.channel / decode.hybrid's lexicon: fitted once, in the store


def test_the_same_data_and_options_find_the_store_and_others_do_not(tmp_path):
    corpus(tmp_path / "d")
    first = task_for(tmp_path / "d", tmp_path / "c")
    again = task_for(tmp_path / "d", tmp_path / "c", "seed=7")  # a valid split is given: the seed changes nothing
    assert again.prepared_info["hit"] and again.prepared_info["path"] == first.prepared_info["path"]
    assert again.datasets["train"][:] == first.datasets["train"][:]
    assert again.src_tok.state_dict()["model"].equal(first.src_tok.state_dict()["model"])
    other = task_for(tmp_path / "d", tmp_path / "c", "tokenizer.vocab_size=50")
    assert not other.prepared_info["hit"] and other.src_tok.vocab_size != first.src_tok.vocab_size
    corpus(tmp_path / "d", n=61)  # the files changed
    changed = task_for(tmp_path / "d", tmp_path / "c")
    assert not changed.prepared_info["hit"] and len(changed.sources["train"]) == 61


def test_a_carved_valid_split_depends_on_the_seed(tmp_path):
    corpus(tmp_path / "d", valid=False)
    a = task_for(tmp_path / "d", tmp_path / "c", "seed=1")
    b = task_for(tmp_path / "d", tmp_path / "c", "seed=2")
    assert not b.prepared_info["hit"] and a.sources["valid"][:] != b.sources["valid"][:]
    assert task_for(tmp_path / "d", tmp_path / "c", "seed=1").prepared_info["hit"]


def test_a_checkpoints_tokenizer_gets_a_store_encoded_with_it(tmp_path):
    corpus(tmp_path / "d")
    corpus(tmp_path / "other", n=40, long_every=5)
    theirs = task_for(tmp_path / "other", tmp_path / "c")  # a model trained on other data
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist(
        [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", "tokenizer.vocab_size=60",
         "data.max_len=40"]))
    task = TranslationTask(cfg)
    task.load_state_dict(theirs.state_dict())  # as resume and predict do
    task.load_data()
    mine = task_for(tmp_path / "d", tmp_path / "c")
    assert task.prepared_info["path"] != mine.prepared_info["path"]
    assert task.datasets["test"][0][0] == theirs.src_tok.encode(PAIRS[0][0]) != mine.datasets["test"][0][0]


def test_data_errors_still_name_file_and_line(tmp_path):
    corpus(tmp_path / "d")
    with open(tmp_path / "d" / "train.tsv", "a", encoding="utf-8") as f:
        f.write("no tab here\n")
    with pytest.raises(DataError, match=r"train\.tsv:61"):
        task_for(tmp_path / "d", tmp_path / "c")
    assert not any((tmp_path / "c" / "prepared").glob("translation-*"))  # nothing half-built left behind


@pytest.mark.slow
def test_prepare_then_run_from_the_command_line(tmp_path):
    corpus(tmp_path / "d")
    keys = [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", "tokenizer.vocab_size=60"]
    prep = run_cli("task=translation", *keys, module="attnapps.prepare")
    assert prep.returncode == 0, prep.stderr
    assert "cache miss" in prep.stdout and "examples: train 51, valid 5, test 5" in prep.stdout  # 9 pairs too long dropped
    again = run_cli("task=translation", *keys, module="attnapps.prepare")
    assert "cache hit" in again.stdout
    run = run_cli("task=translation", *keys, "trainer.max_steps=2", "model.hidden_size=16", "model.embed_size=16",
                  "decode.beam=1", "decode.hybrid=false", "report.baseline=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data.cache_hit"] == 1 and metrics["data.prepare_seconds"] == 0
    assert metrics["train.first_update_seconds"] > 0
    assert "Prepared data reused (cache hit" in (tmp_path / "run" / "report.md").read_text()
    other = run_cli("task=dummy", module="attnapps.prepare")  # (the test task reads its data in each run)
    assert other.returncode == 2 and other.stderr.strip().count("\n") == 0
    assert "has no prepared store" in other.stderr


@pytest.mark.parametrize("layout", ["tsv", "parallel"])
@pytest.mark.parametrize("valid", [True, False])
def test_streamed_pairs_are_the_loaded_pairs(tmp_path, layout, valid):
    """stream_pairs (what preparing reads, a pair at a time) gives load_pairs' pairs in its order, with its
    skip counts: bad UTF-8, a wrong number of tabs, empty sides, unaligned lines; valid carved by the seed;
    reversed."""
    from attnapps_tasks.translation.data import stream_pairs

    d = tmp_path / "d"
    d.mkdir()
    good = [(f"{s} {i}", f"{t} {i}") for i in range(40) for s, t in [PAIRS[i % 5]]]
    if layout == "tsv":
        lines = [f"{s}\t{t}".encode() for s, t in good]
        lines[3], lines[8], lines[12] = b"bad \xff\tbyte", b"no tab here", b"\tempty source"
        (d / "train.tsv").write_bytes(b"\n".join(lines) + b"\n")
        (d / "test.tsv").write_text("\n".join(f"{s}\t{t}" for s, t in PAIRS) + "\n")
        if valid:
            (d / "valid.tsv").write_text("\n".join(f"{t}\t{s}" for s, t in PAIRS) + "\n")
    else:
        src = [s.encode() for s, _ in good]
        tgt = [t.encode() for _, t in good]
        src[5], tgt[9], tgt[14] = b"bad \xfe", b"", b"also bad \xff"
        (d / "train.en").write_bytes(b"\n".join(src) + b"\n")
        (d / "train.de").write_bytes(b"\n".join(tgt[:-2]) + b"\n")  # two lines short: unaligned at the end
        (d / "test.en").write_text("\n".join(s for s, _ in PAIRS) + "\n")
        (d / "test.de").write_text("\n".join(t for _, t in PAIRS) + "\n")
        if valid:
            (d / "valid.en").write_text("\n".join(s for s, _ in PAIRS) + "\n")
            (d / "valid.de").write_text("\n".join(t for _, t in PAIRS) + "\n")
    for reverse in (False, True):
        want, policy = load_pairs(str(d), "", "", "skip", 7, reverse)
        _, streams, streamed = stream_pairs(str(d), "", "", "skip", 7, reverse)
        got = {split: list(stream()) for split, stream in streams.items()}
        assert got == want and streamed.skipped == policy.skipped > 0
        assert len(got["valid"]) == (5 if valid else 2)  # given, or 5% of train carved
    with pytest.raises(DataError) as raised:
        load_pairs(str(d), "", "", "raise", 7)
    with pytest.raises(DataError) as streamed_error:
        _, streams, _ = stream_pairs(str(d), "", "", "raise", 7)
        for stream in streams.values():
            list(stream())
    assert str(streamed_error.value) == str(raised.value)  # the same first error


def test_a_final_evaluation_decodes_window_by_window_and_writes_hypotheses_as_they_come(tmp_path, monkeypatch):
    """Windows of 2 pairs give the hypotheses and scores of one window over the whole split, and
    test_hypotheses.txt holds each window's lines before the next window is decoded."""
    import torch

    import attnapps.task as core

    corpus(tmp_path / "d")
    task = task_for(tmp_path / "d", tmp_path / "c", "decode.hybrid=false", "decode.channel=0")
    torch.manual_seed(0)
    model = task.build_model()
    whole = task.evaluate(model, "test", final=True)
    assert whole.outputs["written"] is False  # outside a run: nothing written, the report writes the file
    monkeypatch.setattr(core, "EVAL_WINDOW", 2)
    task.outputs_dir = tmp_path / "run"
    out_file, seen, translate = tmp_path / "run" / "test_hypotheses.txt", [], task.translate

    def spy(model, sources, *args, **kwargs):
        seen.append((len(sources), len(out_file.read_text(encoding="utf-8").splitlines())))
        return translate(model, sources, *args, **kwargs)

    monkeypatch.setattr(task, "translate", spy)
    windowed = task.evaluate(model, "test", final=True)
    assert seen == [(2, 0), (2, 2), (1, 4)]  # 5 test pairs: each window's lines are on disk before the next
    assert windowed.outputs["texts"] == whole.outputs["texts"] and windowed.metrics == whole.metrics
    assert out_file.read_text(encoding="utf-8") == "".join(f"{t}\n" for t in whole.outputs["texts"])
    assert windowed.outputs["written"] is True
