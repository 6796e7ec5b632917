"""The examples in docstrings (``>>>``) run as doctests: every module of ``attnapps/`` and ``tasks/`` that
has one, its printed values compared with the docstring's."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import ROOT

MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).replace("tasks.", "attnapps_tasks.", 1).removesuffix(".__init__")
    for top in ("attnapps", "tasks") for p in (ROOT / top).rglob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


def test_the_examples_are_found():
    assert {"attnapps.attention", "attnapps.attention.record", "attnapps.attention.base", "attnapps.task"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
