"""The command line as users drive it: config errors, help, run directory contents, sweeps, predict."""

import json

import pytest

from attnapps.errors import ConfigError
from attnapps.task import get_task, list_tasks
from tests.conftest import run_cli


def one_line_error(proc):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_registry():
    import tests.dummy_task  # noqa: F401  (registers "dummy")

    assert "dummy" in list_tasks() and get_task("dummy").primary_metric == "accuracy"
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("override, expected", [
    ("model.hiden=3", "unknown config key 'model.hiden'"),
    ("trainer.max_step=3", "unknown config key 'trainer.max_step'"),
    ("trainer.max_steps=abc", "bad value for config key 'trainer.max_steps'"),
    ("bogus=1", "unknown config key 'bogus'"),
])
@pytest.mark.slow
def test_bad_config_is_one_line_naming_the_key(override, expected):
    assert expected in one_line_error(run_cli("task=dummy", override))


@pytest.mark.slow
def test_bad_sweep_value_and_unknown_task():
    assert "model.hidden" in one_line_error(run_cli("-m", "task=dummy", "model.hidden=4,x"))
    assert "unknown task 'dumy'" in one_line_error(run_cli("task=dumy"))


@pytest.mark.parametrize("task, old, new", [("translation", "decode.samples", "report.examples"),
                                           ("translation", "decode.plots", "report.figures"),
                                           ("captioning", "decode.figures", "report.figures")])
def test_a_renamed_key_still_works_for_a_release_with_a_deprecation_line(task, old, new):
    out = run_cli(f"task={task}", f"{old}=-1")  # -1: rejected by the new key's rule, before any data is read
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"warning: {old}= is deprecated and will be removed in the next release; use {new}=",
        f"error: bad value for config key '{new}': -1 must be >= 0"]


def test_no_task_given_runs_the_task_that_says_it_is_the_default():
    from attnapps.task import default_task

    assert default_task() == "translation" and get_task("translation").default
    assert [n for n in list_tasks() if get_task(n).default] == ["translation"]
    out = run_cli("--help")
    assert "(default: translation)" in out.stdout and "Options of task=translation" in out.stdout


def test_help_lists_tasks_and_options():
    out = run_cli("task=dummy", "--help")
    assert out.returncode == 0
    assert "dummy" in out.stdout and "model.hidden" in out.stdout and "trainer.max_minutes" in out.stdout


@pytest.mark.slow
def test_run_directory_contents_and_predict(tmp_path):
    run = tmp_path / "run"
    out = run_cli("task=dummy", f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    assert f"report: {run}/report.md" in out.stdout
    for f in ("config.yaml", "metrics.json", "report.md", "log.csv", "plots/learning_curves.png",
              "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    for k in ("test.accuracy", "valid.loss", "train.wall_seconds", "train.examples_per_sec"):
        assert isinstance(metrics[k], float)
    report = (run / "report.md").read_text()
    assert "## Final metrics" in report and "plots/learning_curves.png" in report and "## Dummy section" in report
    assert "task_name: dummy" in (run / "config.yaml").read_text()
    from attnapps.outputs import RUN_FILES, missing, undocumented  # the reference page's table, from the CLI

    written = [str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()]
    assert undocumented(written, RUN_FILES) == [] and missing(written, RUN_FILES) == []
    # a task without explore() still gets report.html: its curves and metrics, no examples
    from tests.serving.test_explorer import page_data

    page = page_data((run / "report.html").read_text())
    assert page["examples"] == [] and page["metrics"]["test.accuracy"] == metrics["test.accuracy"]
    assert set(page["curves"]) >= {"train.loss", "valid.loss"} and "(report.html)" in report

    pred = run_cli("task=dummy", f"run={run}", module="attnapps.predict", input="1 1 1 1 -1 -1 -1 -1\n-1 -1 -1 -1 1 1 1 1\n")
    assert pred.returncode == 0, pred.stderr
    assert pred.stdout.split() == ["neg", "pos"]
    pred = run_cli("task=dummy", f"run={run}", "scale=-1", module="attnapps.predict", input="-1 -1 -1 -1 1 1 1 1\n")
    assert pred.stdout.split() == ["neg"]
    assert "unknown predict option 'beem'" in one_line_error(
        run_cli("task=dummy", f"run={run}", "beem=3", module="attnapps.predict"))
    assert "no such run directory" in one_line_error(
        run_cli("task=dummy", f"run={tmp_path / 'nope'}", module="attnapps.predict"))
    assert "no checkpoints/best.pt" in one_line_error(run_cli("task=dummy", f"run={tmp_path}", module="attnapps.predict"))


@pytest.mark.slow
def test_multirun_sweep_and_comparison_table(tmp_path):
    out = run_cli("-m", "task=dummy", "model.hidden=4,8", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    table = run_cli(str(tmp_path), "--out", str(tmp_path / "cmp"), module="attnapps.report")
    assert table.returncode == 0, table.stderr
    md = (tmp_path / "cmp.md").read_text().splitlines()
    assert md[0].startswith("| run | model.hidden |") and "test.accuracy" in md[0]
    assert len(md) == 4 and "| 4 |" in md[2] and "| 8 |" in md[3]
    assert (tmp_path / "cmp.csv").read_text().count("\n") == 3


@pytest.mark.parametrize("task", ["translation", "classification", "captioning", "generation"])
def test_help_marks_each_model_key_with_the_architectures_that_use_it(task):
    """``--help`` as printed: a model key used by some architectures only ends with ``[arch, ...]``, those
    whose config dataclass has the field (in registry order); a key every architecture has is unmarked."""
    import dataclasses
    import importlib
    import re

    archs = importlib.import_module(f"attnapps_tasks.{task}.model").ARCHS
    fields = {arch: {f.name for f in dataclasses.fields(cls.config_class)} for arch, cls in archs.items()}
    r = run_cli(f"task={task}", "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    seen = set()
    for i, line in enumerate(lines):
        m = re.match(r"  model\.(\w+)=", line)
        if not m or m.group(1) == "arch":
            continue
        key, text = m.group(1), lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("      ") else ""
        users = [arch for arch in archs if key in fields[arch]]
        mark = re.search(r" \[([\w, ]+)\]$", text)
        if len(users) == len(archs):
            assert mark is None or set(mark.group(1).split(", ")) - set(archs), f"model.{key}: marked but shared"
        else:
            assert mark and mark.group(1).split(", ") == users, f"model.{key}: {text!r} vs {users}"
        seen.add(key)
    assert seen == set().union(*fields.values())  # every key of every architecture is listed


def test_extra_keys_from_the_environment_replace_the_command_lines(monkeypatch, tmp_path):
    from attnapps.errors import AttnappsError
    from attnapps.run import with_extra_keys

    monkeypatch.setenv("ATTNAPPS_EXTRA_KEYS", "trainer.max_steps=2 'model.name=a b'")
    assert with_extra_keys(["task=dummy", "trainer.max_steps=500", "seed=3", "+model.name=x"]) == \
        ["task=dummy", "seed=3", "trainer.max_steps=2", "model.name=a b"]
    monkeypatch.setenv("ATTNAPPS_EXTRA_KEYS", "?decode.beam=1 ?model.attention=dot trainer.max_steps=2")
    assert with_extra_keys(["task=translation", "decode.beam=5"]) == \
        ["task=translation", "decode.beam=1", "model.attention=dot", "trainer.max_steps=2"]
    assert with_extra_keys(["task=classification"]) == \
        ["task=classification", "model.attention=dot", "trainer.max_steps=2"]  # no decode.* keys: left out
    monkeypatch.setenv("ATTNAPPS_EXTRA_KEYS", "")
    assert with_extra_keys(["task=dummy", "seed=3"]) == ["task=dummy", "seed=3"]
    monkeypatch.setenv("ATTNAPPS_EXTRA_KEYS", "--multirun")
    with pytest.raises(AttnappsError, match="ATTNAPPS_EXTRA_KEYS: expected key=value words, got '--multirun'"):
        with_extra_keys(["task=dummy"])
    run = tmp_path / "run"  # through the command line: the run stops where the environment says
    out = run_cli("task=dummy", "trainer.max_steps=50", f"hydra.run.dir={run}",
                  env_extra={"ATTNAPPS_EXTRA_KEYS": "trainer.max_steps=3"})
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "metrics.json").read_text())["train.steps"] == 3
    assert "max_steps: 3" in (run / "config.yaml").read_text()
