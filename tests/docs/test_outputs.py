"""The reference's run-directory and ``metrics.json`` tables (``attnapps.outputs`` + each task's
``outputs.py``) against what runs really write: nothing undocumented, nothing marked always present missing."""

from __future__ import annotations

import pytest

from attnapps import outputs
from attnapps.task import get_task, load_plugins

TASKS = ["translation", "classification", "captioning", "generation"]


def test_patterns_match_one_part_per_placeholder():
    assert outputs.documented("test.pos.f1", ["<split>.<label>.<measure>"]) == "<split>.<label>.<measure>"
    assert outputs.documented("test.f1", ["<split>.<label>.<measure>"]) is None
    assert outputs.documented("test.a.b.f1", ["<split>.<label>.<measure>"]) is None  # a part never holds a dot
    assert outputs.documented("plots/attention_12.png", ["plots/attention_<k>.png"]) == "plots/attention_<k>.png"
    assert outputs.documented("plots/x/attention_1.png", ["plots/attention_<k>.png"]) is None
    assert outputs.documented("valid.bleu4", ["<split>.bleu<n>"]) and not outputs.documented("valid.bleu", ["<split>.bleu<n>"])
    assert outputs.documented("test.lossy", ["test.loss"]) is None  # whole names only
    assert outputs.documented("tb/events.out.1.host", ["tb/<file...>"]) and not outputs.documented("tb/", ["tb/<file...>"])
    assert outputs.missing(["valid.loss"], {"valid.loss": "* x", "test.loss": "* y", "x.y": "z"}) == ["test.loss"]


@pytest.mark.slow  # the tiny runs: about a minute, shared with the serving tests
@pytest.mark.parametrize("task", TASKS)
def test_every_key_and_file_a_run_writes_is_documented(tiny_runs, task):
    load_plugins()
    run, metrics = tiny_runs[task]
    keys, files = outputs.task_metric_keys(get_task(task)), outputs.task_run_files(get_task(task))
    written = [str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()]
    assert outputs.undocumented(metrics, keys) == [], "metrics.json keys no pattern documents"
    assert outputs.missing(metrics, keys) == [], "keys documented as always present, missing"
    assert outputs.undocumented(written, files) == [], "run-directory files no pattern documents"
    assert outputs.missing(written, files) == [], "files documented as always present, missing"


def test_the_core_names_no_task_and_every_task_documents_its_primary_metric():
    load_plugins()
    for task in TASKS:
        cls = get_task(task)
        for split in ("valid", "test"):
            pattern = outputs.documented(f"{split}.{cls.primary_metric}", outputs.task_metric_keys(cls))
            assert pattern is not None and outputs.task_metric_keys(cls)[pattern].startswith("*"), (task, split)
