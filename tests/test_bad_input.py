"""Every error a user can cause: exit status 2, one line, no traceback, and the culprit named.

The cases (``tests/error_cases.py``, also the source of the documentation's error reference) run the real
entry points (``attnapps.run.main``, ``attnapps.predict.main``) in-process, which is what ``python -m``
calls, so the battery stays fast; ``tests/training/test_cli.py`` checks the same
contract through real subprocesses. Each case builds its bad input in a fresh folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnapps import predict as predict_cli
from attnapps import run as run_cli_module
from tests.error_cases import (CONFIG_CASES, DATA_CASES, GUIDE, RUN_CASES, SECTIONS, assert_one_line_error,
                               call, changed_data, config_argv, copy_run, data_argv, run_case, trained_run,
                               without_run_dir)


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_line_error_naming_the_file(case, tmp_path):
    code, err = call(run_cli_module.main, data_argv(case, tmp_path))
    assert_one_line_error(code, err, *case[3])


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_one_line_error_before_any_data_is_read(case, tmp_path, monkeypatch):
    """The data path named does not exist, and opening anything under it raises: had the task read its data
    before checking the config, the one error line would be about the data, not the key."""
    import builtins
    import io

    _, argv, expected = case
    absent = tmp_path / "data-never-read"
    real_open = builtins.open

    def guarded_open(file, *a, **k):
        if str(absent) in str(file):
            raise AssertionError(f"data was read before the config was checked: {file}")
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    code, err = call(run_cli_module.main, config_argv(case, tmp_path))
    assert_one_line_error(code, err, *expected)
    assert "data-never-read" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()


# ---------------------------------------------------------------------------------- predict and resume
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished classification run (2 updates)."""
    return trained_run(tmp_path_factory.mktemp("trained"))


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_directory_predict_and_resume_errors(case, request, tmp_path):
    _, _, code, err = run_case("run", case, tmp_path, lambda: request.getfixturevalue("trained"))
    assert_one_line_error(code, err, *case[3])


def test_every_case_has_advice_for_the_error_reference():
    ids = [c[0] for c in DATA_CASES + CONFIG_CASES + RUN_CASES]
    assert len(ids) == len(set(ids)) and set(ids) == set(GUIDE)
    prefixes = tuple(p for _, p in SECTIONS if p not in ("CONFIG", "RUN"))
    assert all(c[0].startswith(prefixes) for c in DATA_CASES)  # every data case falls in a section of the page


class Payload:
    """Unpickling this would create the file ``marker`` (arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_more_predict_errors(trained, tmp_path):
    """Beyond the catalog's cases (RUN_CASES)."""
    run = trained["run"]
    p = lambda *a: call(predict_cli.main, list(a))  # noqa: E731
    assert_one_line_error(*p("task=classification", f"run={run}", "top=many"), "predict option 'top'")
    assert_one_line_error(*p("task=classification", f"run={run}", f"input={tmp_path / 'none.txt'}"),
                          "none.txt", "no such file")
    assert_one_line_error(*p("task=classification", f"run={run}", "device=gpu"), "device='gpu'")
    assert_one_line_error(*p(f"run={run}", "noequals"), "expected key=value")


def test_truncated_and_pickled_checkpoints_are_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    assert_one_line_error(*call(predict_cli.main, [f"run={run}"]), "best.pt", "cannot load checkpoint")
    marker = tmp_path / "pwned"
    torch.save({"task": "classification", "model": Payload(marker), "config": {}, "task_state": {}}, best)
    assert_one_line_error(*call(predict_cli.main, [f"run={run}"]), "best.pt", "cannot load checkpoint")
    assert not marker.exists(), "the pickle payload was executed"
    torch.save({"hello": torch.zeros(2)}, best)
    assert_one_line_error(*call(predict_cli.main, [f"run={run}"]), "not an attnapps checkpoint")
    # the same payload as last.pt, for resume
    last = run / "checkpoints" / "last.pt"
    torch.save({"task": "classification", "rng": Payload(marker)}, last)
    argv = without_run_dir(trained)
    code, err = call(run_cli_module.main, [*argv, f"hydra.run.dir={run}", "trainer.resume=true", "trainer.max_steps=4"])
    assert_one_line_error(code, err, "last.pt", "cannot load checkpoint")
    assert not marker.exists()


def test_resume_errors(trained, tmp_path):
    """Beyond the catalog's cases (RUN_CASES): a checkpoint path that does not exist, and changed data
    accepted when forced."""
    argv = without_run_dir(trained)
    code, err = call(run_cli_module.main, [*argv, f"hydra.run.dir={tmp_path / 'x'}", f"trainer.resume={tmp_path / 'nope.pt'}"])
    assert_one_line_error(code, err, "nope.pt", "no checkpoint")
    argv = changed_data(trained, tmp_path)
    assert_one_line_error(*call(run_cli_module.main, argv), "the data changed since the checkpoint")
    code, err = call(run_cli_module.main, argv + ["trainer.resume_force=true"])
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train.steps"] == 3
