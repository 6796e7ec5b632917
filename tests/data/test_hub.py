"""data.hf= (attnapps/data/hub.py): datasets opened by Hugging Face ``datasets`` -- folders of json, csv and
parquet files and folders written by ``save_to_disk``, as offline stand-ins for Hub names -- are exported
once into each task's own layout and read back row for row."""

import json

import pytest
from omegaconf import OmegaConf

from attnapps.data import hub
from attnapps.errors import ConfigError

datasets = pytest.importorskip("datasets")


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def task_with(name, tmp_path, *dotlist, task_cls=None):
    from attnapps.task import get_task

    cls = task_cls or get_task(name)
    cfg = OmegaConf.merge(OmegaConf.structured(cls.config_class),
                          OmegaConf.from_dotlist([f"data.cache_dir={tmp_path / 'cache'}", *dotlist]))
    task = cls(cfg)
    task.load_data()
    return task


# ---------------------------------------------------------------------------------------------- the core
def test_splits_by_name_by_map_and_carved_with_the_seed(tmp_path):
    for split, n in (("train", 200), ("validation", 7), ("test", 5)):
        write_jsonl(tmp_path / "d" / f"{split}.jsonl", [{"x": f"{split} {i}"} for i in range(n)])
    found = hub.load(str(tmp_path / "d"))
    assert {k: len(v) for k, v in found.items()} == {"train": 200, "valid": 7, "test": 5}
    assert found["valid"][0]["x"] == "validation 0"
    mapped = hub.load(str(tmp_path / "d"), splits="train=train,valid=test,test=validation")
    assert mapped["valid"][0]["x"] == "test 0" and mapped["test"][0]["x"] == "validation 0"
    (tmp_path / "d" / "validation.jsonl").unlink()
    a, b = hub.load(str(tmp_path / "d"), seed=1), hub.load(str(tmp_path / "d"), seed=1)
    assert len(a["valid"]) == 10 and len(a["train"]) == 190  # 5% of train
    assert a["valid"]["x"] == b["valid"]["x"] and not set(a["valid"]["x"]) & set(a["train"]["x"])
    assert hub.load(str(tmp_path / "d"), seed=2)["valid"]["x"] != a["valid"]["x"]
    with pytest.raises(ConfigError, match=r"data.hf_splits: valid=dev, but .* has the splits train, test"):
        hub.load(str(tmp_path / "d"), splits="valid=dev")
    with pytest.raises(ConfigError, match=r"'data.hf_splits': 'eval' is not train, valid or test"):
        hub.load(str(tmp_path / "d"), splits="eval=test")
    with pytest.raises(ConfigError, match=r"'data.hf_columns': 'text' must be NAME=VALUE pairs"):
        hub.pairs("text", "data.hf_columns")


def test_a_dataset_that_cannot_be_opened_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.hf=no_such/dataset_here: cannot open it: .*offline"):
        hub.load("no_such/dataset_here")


def test_rows_give_label_names_and_dotted_columns(tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"]),
                                  "pair": {"de": datasets.Value("string"), "en": datasets.Value("string")}})
    ds = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0], "pair": [{"de": "Hund", "en": "dog"},
                                                                                    {"de": "Katze", "en": "cat"}]},
                                    features=features)
    assert hub.columns_of(ds) == ["text", "label", "pair", "pair.de", "pair.en"]
    assert list(hub.rows(ds, {"t": "text", "y": "label", "s": "pair.en"})) == [
        {"t": "a", "y": "pos", "s": "dog"}, {"t": "b", "y": "neg", "s": "cat"}]
    with pytest.raises(ConfigError, match=r"data.hf_columns: y=stars, but .* has the columns text, label, pair"):
        next(hub.rows(ds, {"y": "stars"}))


# ---------------------------------------------------------------------------------------------- the tasks
def test_classification_from_csv_files_and_a_saved_dataset_with_class_labels(tmp_path):
    rows = {"train": [("a, b\tgood\nfilm", "pos"), ("bad one", "neg")] * 12, "test": [("fine", "pos"), ("dull", "neg")]}
    folder = tmp_path / "csv"
    folder.mkdir()
    for split, items in rows.items():
        datasets.Dataset.from_dict({"review": [t for t, _ in items], "stars": [y for _, y in items]}).to_csv(
            str(folder / f"{split}.csv"), index=False)
    task = task_with("classification", tmp_path, f"data.hf={folder}", "data.hf_columns='text=review,label=stars'",
                     "data.hf_splits='train=train,valid=test,test=test'")
    assert task.raw["train"][:] == rows["train"] and task.raw["test"][:] == rows["test"]
    assert task.cfg.data.format == "csv" and task.cfg.data.path == task.hub_info["folder"]
    assert not task.hub_info["hit"]
    saved = tmp_path / "saved"
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"text": [t for t, _ in items], "label": [["neg", "pos"].index(y) for _, y in items]}, features=features)
        for split, items in rows.items()}).save_to_disk(str(saved))
    again = task_with("classification", tmp_path, f"data.hf={saved}")
    assert again.raw["test"][:] == rows["test"] and sorted(again.labels) == ["neg", "pos"]
    assert len(again.raw["train"]) + len(again.raw["valid"]) == 24  # valid carved: 5% of train, at least 1
    assert task_with("classification", tmp_path, f"data.hf={saved}").hub_info["hit"]


def test_translation_from_a_translation_column_and_from_two_text_columns(tmp_path):
    pairs = [(f"the dog {i} runs", f"der Hund {i} läuft") for i in range(30)]
    folder = tmp_path / "pq"
    folder.mkdir()
    for split, items in (("train", pairs[:24]), ("validation", pairs[24:27]), ("test", pairs[27:])):
        datasets.Dataset.from_dict({"translation": [{"de": g, "en": s} for s, g in items]}).to_parquet(
            str(folder / f"{split}.parquet"))
    common = ("tokenizer.vocab_size=40", "tokenizer.byte_fallback=false")
    task = task_with("translation", tmp_path, f"data.hf={folder}", *common)
    assert (task.cfg.data.src_lang, task.cfg.data.tgt_lang) == ("en", "de")  # English the source
    assert list(task.sources["test"]) == [s for s, _ in pairs[27:]]
    assert list(task.refs["test"]) == [g for _, g in pairs[27:]]
    back = task_with("translation", tmp_path, f"data.hf={folder}", "data.src_lang=de", "data.tgt_lang=en", *common)
    assert list(back.sources["valid"]) == [g for _, g in pairs[24:27]]
    saved = tmp_path / "two"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"en": [s for s, _ in pairs[:27]],
                                                              "de": [g for _, g in pairs[:27]]}),
                          "test": datasets.Dataset.from_dict({"en": [s for s, _ in pairs[27:]],
                                                             "de": [g for _, g in pairs[27:]]})}).save_to_disk(str(saved))
    two = task_with("translation", tmp_path, f"data.hf={saved}", *common)
    assert (two.cfg.data.src_lang, two.cfg.data.tgt_lang) == ("en", "de")
    assert list(two.sources["test"]) == [s for s, _ in pairs[27:]]
    with pytest.raises(ConfigError, match="name both sides"):
        task_with("translation", tmp_path, f"data.hf={saved}", "data.hf_columns=src=en", *common)


def test_generation_from_text_rows(tmp_path):
    lines = {"train": [f"line {i} of the story ." for i in range(400)], "validation": ["the line ."] * 50,
             "test": ["one story ."] * 50}
    for split, items in lines.items():
        write_jsonl(tmp_path / "w" / f"{split}.jsonl", [{"text": t} for t in items])
    task = task_with("generation", tmp_path, f"data.hf={tmp_path / 'w'}", "model.context=16")
    assert task.chars == {"train": sum(len(t) + 1 for t in lines["train"]), "valid": 11 * 50, "test": 12 * 50}
    assert task.tok.decode(task.ids["test"][:24].tolist()) == "one story .\none story .\n"


def test_captioning_from_image_rows_with_caption_lists(tmp_path):
    from PIL import Image

    colours = [(255, 0, 0), (0, 0, 255)]
    rows = [(Image.new("RGB", (8, 8), colours[i % 2]), [f"a {['red', 'blue'][i % 2]} square", "a square"])
            for i in range(12)]
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string"))})
    make = lambda part: datasets.Dataset.from_dict({"image": [im for im, _ in part], "captions": [c for _, c in part]},
                                                   features=features)
    datasets.DatasetDict({"train": make(rows[:8]), "validation": make(rows[8:10]), "test": make(rows[10:])}
                         ).save_to_disk(str(tmp_path / "caps"))
    folder, overrides, info = hub.export(str(tmp_path / "caps"), "", "", "", 0, str(tmp_path / "cache"), "captioning",
                                         _captioning().write_hub)
    doc = json.loads((tmp_path / "cache" / "hub" / folder.rsplit("/", 1)[-1] / "dataset.json").read_text())
    assert [e["split"] for e in doc["images"]] == ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    assert [[s["raw"] for s in e["sentences"]] for e in doc["images"]] == [c for _, c in rows]
    for entry, (image, _) in zip(doc["images"], rows):
        with Image.open(f"{folder}/images/{entry['filename']}") as got:
            assert got.convert("RGB").getpixel((3, 3)) == image.getpixel((3, 3))
    assert not info["hit"] and overrides == {"image_dir": ""}
    task = task_with("captioning", tmp_path, f"data.hf={tmp_path / 'caps'}")  # the run reads the export
    assert task.hub_info["hit"] and {k: len(v) for k, v in task.datasets.items()} == {"train": 8, "valid": 2, "test": 2}
    flat = datasets.Dataset.from_dict({"image": [im for im, _ in rows], "caption_0": [c[0] for _, c in rows],
                                       "caption_1": [c[1] for _, c in rows]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "caption_0": datasets.Value("string"),
                                                                  "caption_1": datasets.Value("string")}))
    flat.save_to_disk(str(tmp_path / "flat"))
    folder, _, _ = hub.export(str(tmp_path / "flat"), "", "", "captions=caption_0+caption_1", 0,
                              str(tmp_path / "cache"), "captioning", _captioning().write_hub)
    doc = json.loads((tmp_path / "cache" / "hub" / folder.rsplit("/", 1)[-1] / "dataset.json").read_text())
    assert sorted([s["raw"] for s in e["sentences"]] for e in doc["images"]) == sorted(c for _, c in rows)
    assert sorted(e["split"] for e in doc["images"]).count("val") == 1  # 5% of 12 rows, at least one


def _captioning():
    from attnapps.task import get_task

    cls = get_task("captioning")
    return cls(OmegaConf.merge(OmegaConf.structured(cls.config_class), {"data": {"hf": "caps"}}))


@pytest.mark.slow
def test_the_command_line_takes_a_dataset_by_name_with_column_pairs(tmp_path):
    """``data.hf_columns=text=review,label=stars`` needs no quoting on the command line; the run's
    config.yaml points data.path at the export and keeps data.hf."""
    from tests.conftest import run_cli

    words = {"pos": "good great fine", "neg": "bad dull poor"}
    for split, n in (("train", 60), ("test", 10)):
        write_jsonl(tmp_path / "d" / f"{split}.jsonl", [{"review": f"it was {words[y]}", "stars": y}
                                                        for y in ["pos", "neg"] * (n // 2)])
    r = run_cli("task=classification", f"data.hf={tmp_path / 'd'}", "data.hf_columns=text=review,label=stars",
                "trainer.max_steps=3", "report.baseline=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert cfg.data.hf == str(tmp_path / "d") and "/hub/classification-hub-" in cfg.data.path
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test.accuracy"] >= 0.5
    bad = run_cli("task=classification", f"data.hf={tmp_path / 'd'}", "data.hf_columns=text=body",
                  f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: data.hf_columns: text=body, but ")
