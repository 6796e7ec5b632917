"""Tiny trained runs of the four tasks, built once per test session (about a minute in all): a Transformer
that reverses letter sequences, a classifier that reads one deciding word, a captioner of six synthetic
scenes, a two-layer character LM. The explorer, API and browser tests use them, and so does the check
that every file and ``metrics.json`` key a run writes is documented (``tests/docs/test_outputs.py``)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from attnapps.run import train


def _run(task_cls, root, *overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(task_cls.config_class), OmegaConf.from_dotlist([
        "trainer.max_minutes=0", "trainer.progress=false", "diag.examples=4", *overrides]))
    metrics = train(cfg, root / "run", task_cls)
    return root / "run", metrics


def translation_run(root):
    from attnapps_tasks.translation.task import TranslationTask
    from tests.tasks.test_translation import reverse_data

    reverse_data(root / "data", n_train=1000)
    return _run(TranslationTask, root, f"data.path={root / 'data'}", "tokenizer.vocab_size=24", "model.arch=transformer",
                "model.hidden_size=32", "model.ff_size=64", "model.layers=2", "model.heads=2", "model.dropout=0",
                "model.label_smoothing=0", "trainer.max_epochs=0", "trainer.max_steps=300", "trainer.eval_every=150",
                "trainer.batch_size=32", "trainer.lr=3e-3", "trainer.warmup_steps=30", "decode.beam=2")


def classification_run(root):
    from attnapps_tasks.classification.task import ClassificationTask

    words = {"pos": ["great", "lovely", "superb", "moving"], "neg": ["awful", "boring", "dull", "weak"]}
    lines = [f"the film was {words[lab][i % 4]} and {words[lab][(i + 1) % 4]} overall\t{lab}\n"
             for i in range(10) for lab in ("pos", "neg")]
    (root / "data").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (root / "data" / f"{split}.tsv").write_text("".join(lines))
    return _run(ClassificationTask, root, f"data.path={root / 'data'}", "model.arch=bilstm_attention",
                "tokenizer.min_freq=1", "model.dropout=0", "model.embed_size=16", "model.hidden_size=16",
                "model.hops=2", "model.heads=1", "trainer.max_epochs=15", "trainer.batch_size=5", "trainer.lr=1e-2",
                "trainer.warmup_steps=5", "trainer.patience=0", "report.baseline=false", "model.ensemble=1")


def captioning_run(root):
    from attnapps_tasks.captioning.synthetic import write_synthetic
    from attnapps_tasks.captioning.task import CaptioningTask

    write_synthetic(root / "data", seed=5, splits=(("train", 6), ("val", 6), ("test", 6)))
    doc = json.loads((root / "data" / "dataset.json").read_text())
    for i, im in enumerate(doc["images"]):  # valid and test are the training images
        src = doc["images"][i % 6]
        im["filename"], im["sentences"], im["objects"] = src["filename"], src["sentences"][:1], src["objects"]
    (root / "data" / "dataset.json").write_text(json.dumps(doc))
    random.seed(0)
    return _run(CaptioningTask, root, f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}",
                "data.min_freq=1", "model.dropout=0", "model.hidden_size=64", "model.embed_size=32",
                "model.doubly_stochastic=0", "trainer.max_epochs=60", "trainer.batch_size=6", "trainer.lr=3e-3",
                "trainer.warmup_steps=5", "trainer.patience=0", "report.figures=1", "decode.beam=1")


def generation_run(root):
    from attnapps_tasks.generation.task import GenerationTask

    text = "the cat sat on the mat. the dog sat on the log. " * 40
    (root / "data").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (root / "data" / f"{split}.txt").write_text(text)
    return _run(GenerationTask, root, f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}",
                "model.arch=transformer", "model.context=32", "model.d_model=32", "model.layers=2", "model.heads=2",
                "model.dropout=0", "trainer.max_epochs=0", "trainer.max_steps=120", "trainer.batch_size=8",
                "trainer.lr=1e-2", "trainer.eval_every=0", "sample.max_new_tokens=24", "sample.heatmap_tokens=12")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """``{task: (run_dir, metrics)}`` for the four tasks. ``ATTNAPPS_TEST_RUNS=DIR`` keeps them in DIR
    and reuses them on the next session (for working on these tests; delete DIR after a code change)."""
    keep = os.environ.get("ATTNAPPS_TEST_RUNS")
    out = {}
    for name, make in [("translation", translation_run), ("classification", classification_run),
                       ("captioning", captioning_run), ("generation", generation_run)]:
        if keep and (Path(keep) / name / "run" / "metrics.json").is_file():
            run = Path(keep) / name / "run"
            out[name] = run, json.loads((run / "metrics.json").read_text())
        else:
            out[name] = make(Path(keep) / name if keep else tmp_path_factory.mktemp(name))
    return out
