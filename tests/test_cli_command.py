"""The ``attnapps`` console script (attnapps.cli) and where the embedded default data is looked for."""

from importlib.metadata import version

import pytest

from attnapps.cli import main
from attnapps.data.files import data_dir, embedded
from attnapps.errors import DataError


def test_version_help_and_unknown_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"attnapps {version('attnapps')}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "prepare", "predict", "report", "study", "serve"):
        assert f"\n  {command} " in out
    assert main(["trian"]) == 2
    assert "unknown command 'trian'; choose one of run, prepare, predict" in capsys.readouterr().err


def test_commands_dispatch_to_their_modules(capsys):
    assert main(["serve", "--help"]) == 0 and "max_body_mb" in capsys.readouterr().out
    assert main(["report", "/nonexistent-dir"]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_embedded_datasets_are_found_through_the_package():
    for name in ("translation", "classification", "generation"):
        assert any(embedded(name).iterdir())
    assert data_dir("", "translation") == embedded("translation")
    assert str(data_dir("/my/data", "translation")) == "/my/data"


def test_a_missing_embedded_dataset_says_where_it_was_looked_for():
    with pytest.raises(DataError) as e:
        embedded("nope")
    msg = str(e.value)
    assert str(embedded("translation").parent / "nope") in msg and "data.path is unset" in msg
