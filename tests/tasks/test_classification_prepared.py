"""task=classification on prepared data: the store holds what reading and encoding the files gives, cut to
data.max_len only when read; it is found again for the same data and tokenizer options, and a checkpoint's
tokenizer and labels are checked against it."""

import pytest
from omegaconf import OmegaConf

from attnapps.errors import DataError
from attnapps_tasks.classification.config import ClassificationConfig
from attnapps_tasks.classification.data import load_examples
from attnapps_tasks.classification.task import ClassificationTask

WORDS = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "boring", "dull"], "mid": ["fine", "okay", "plain"]}


def corpus(directory, n=45, valid=True):
    directory.mkdir(parents=True, exist_ok=True)
    labels = list(WORDS)

    def lines(k, offset):
        out = []
        for i in range(k):
            label = labels[i % 3]
            words = " ".join(WORDS[label][(i + j) % 3] for j in range(1 + (i + offset) % 9))
            out.append(f"the film was {words} . it ends .\t{label}")
        return "\n".join(out) + "\n"

    (directory / "train.tsv").write_text(lines(n, 0), encoding="utf-8")
    (directory / "test.tsv").write_text(lines(9, 4), encoding="utf-8")
    if valid:
        (directory / "valid.tsv").write_text(lines(9, 2), encoding="utf-8")


def task_for(directory, cache, *more):
    cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), {"model": {"tfidf": "off"}},  # (a dotlist reads off as False)
                          OmegaConf.from_dotlist([f"data.path={directory}", f"data.cache_dir={cache}", "tokenizer.min_freq=1",
                                                  "model.arch=ngram_attention", *more]))
    task = ClassificationTask(cfg)
    task.load_data()
    return task


def test_the_store_holds_what_reading_and_encoding_the_files_gives(tmp_path):
    corpus(tmp_path / "d")
    task = task_for(tmp_path / "d", tmp_path / "c", "data.max_len=9")
    assert task.prepared_info["hit"] is False and task.cfg.data.max_len == 9
    splits, labels, _ = load_examples(str(tmp_path / "d"))
    for split, examples in splits.items():  # the reference: each text encoded alone, cut to data.max_len
        want = [(task.tok.encode(text)[:9], labels.index(label)) for text, label in examples]
        assert task.datasets[split][:] == want
        assert task.raw[split][:] == examples
        assert list(task.lengths(split)) == [len(ids) for ids, _ in want]
    assert max(task.lengths("train")) == 9 and len(task.tok.encode(splits["train"][8][0])) > 9


def test_the_same_data_and_tokenizer_find_the_store_and_max_len_is_applied_when_read(tmp_path):
    corpus(tmp_path / "d")
    first = task_for(tmp_path / "d", tmp_path / "c", "data.max_len=9")
    longer = task_for(tmp_path / "d", tmp_path / "c", "data.max_len=40", "seed=3")  # valid given: the seed is moot
    assert longer.prepared_info["hit"] and longer.prepared_info["path"] == first.prepared_info["path"]
    assert max(longer.lengths("train")) > 9
    assert [ids[:9] for ids, _ in longer.datasets["train"]] == [ids for ids, _ in first.datasets["train"]]
    chars = task_for(tmp_path / "d", tmp_path / "c", "tokenizer.kind=char")
    assert not chars.prepared_info["hit"] and chars.tok.kind == "char"
    han = task_for(tmp_path / "d", tmp_path / "c", "model.arch=han")  # sentences end in <eos>
    assert not han.prepared_info["hit"]
    assert han.datasets["test"][0][0].count(han.tok.eos_id) == 2


def test_automatic_settings_come_from_the_stored_lengths_on_a_hit(tmp_path):
    corpus(tmp_path / "d")
    miss = task_for(tmp_path / "d", tmp_path / "c", "model.arch=auto")
    hit = task_for(tmp_path / "d", tmp_path / "c", "model.arch=auto")
    assert hit.prepared_info["hit"] and not miss.prepared_info["hit"]
    assert (hit.cfg.model.arch, hit.cfg.data.max_len, hit.cfg.tokenizer.kind) == \
        (miss.cfg.model.arch, miss.cfg.data.max_len, miss.cfg.tokenizer.kind)
    assert hit.auto_notes == miss.auto_notes and hit.units == miss.units


def test_a_checkpoint_with_other_labels_is_refused_by_name(tmp_path):
    corpus(tmp_path / "d")
    corpus(tmp_path / "other")
    (tmp_path / "other" / "train.tsv").write_text("a b c\tx\nd e f\ty\n" * 5, encoding="utf-8")
    (tmp_path / "other" / "test.tsv").write_text("a b\tx\n", encoding="utf-8")
    (tmp_path / "other" / "valid.tsv").write_text("a b\ty\n", encoding="utf-8")
    theirs = task_for(tmp_path / "other", tmp_path / "c")
    cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), OmegaConf.from_dotlist(
        [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", "model.arch=ngram_attention"]))
    task = ClassificationTask(cfg)
    task.load_state_dict(theirs.state_dict())
    with pytest.raises(DataError, match=r"the labels \['mid', 'neg', 'pos'\] differ from the checkpoint's \['x', 'y'\]"):
        task.load_data()


def test_the_tfidf_companion_and_ngram_vocabulary_are_kept_with_the_store(tmp_path):
    """Fitted on the first run, loaded by the next with the same data and options (the same values, and its
    note says so); data.max_len or the companion's C fit them again."""
    import torch

    corpus(tmp_path / "d")
    on = {"model": {"tfidf": "on", "min_count": 1}}

    def fitted(*more):
        cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), on, OmegaConf.from_dotlist(
            [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", "tokenizer.min_freq=1",
             "model.arch=ngram_attention", *more]))
        task = ClassificationTask(cfg)
        task.load_data()
        note = next(n for n in task.auto_notes if n.startswith("TF-IDF companion"))
        return task.state, note

    first, note1 = fitted()
    second, note2 = fitted()
    assert "fitted in" in note1 and "kept with the prepared data" in note2
    for key in ("keys", "idf", "weight", "bias"):
        assert torch.equal(torch.as_tensor(first.tfidf[key]), torch.as_tensor(second.tfidf[key]))
    assert first.tfidf["C"] == second.tfidf["C"] and torch.equal(first.ngram_keys, second.ngram_keys)
    shorter, note3 = fitted("data.max_len=5")
    assert "fitted in" in note3 and not torch.equal(shorter.ngram_keys, first.ngram_keys)
    assert "fitted in" in fitted("model.tfidf_c=0.5")[1]
