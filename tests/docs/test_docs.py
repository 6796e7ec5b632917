"""The documentation cannot drift from the code: the site builds with every warning an error, every Python
block of a page runs (in order, in one namespace) and prints the output shown under it, every shell block
runs as written at a tiny budget (``ATTNAPPS_EXTRA_KEYS``), and the Chinese pages use the English pages'
commands."""

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and "_generated" not in p.parts)
FENCE = re.compile(r"^(`{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.S | re.M)
TINY = ("trainer.max_steps=2 diag.examples=0 ?decode.beam=1 ?decode.strategy=greedy "  # every documented run, shrunk
        "?report.baseline=false")  # (the baselines and diagnostics a run adds: seconds each, tested elsewhere)


def blocks(page: Path) -> list[tuple[str, str]]:
    """``(language, text)`` of each fenced block of a page, in order (directives such as ``{toctree}``
    excluded)."""
    return [(info.strip(), text) for _, info, text in FENCE.findall(page.read_text(encoding="utf-8"))
            if not info.strip().startswith("{")]


def readme_commands() -> set[str]:
    """The README's install-and-run and test commands: CI runs them itself (``.ci/run``)."""
    return {text for lang, text in blocks(ROOT / "README.md")[:1] if lang == "bash"}


def without_comments(text: str) -> str:
    """Code with ``#`` comments and docstrings' prose left out (a translated page translates those)."""
    text = re.sub(r'"""[^"]*"""', '""""""', text)
    return "\n".join(re.sub(r"\s+#\s.*$", "", line).rstrip() for line in text.splitlines())


def test_every_page_is_found():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "tutorials/attention-layer.md", "zh/tutorials/attention-layer.md"} <= names


@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "python" for lang, _ in blocks(p))],
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_python_blocks_run_and_print_what_the_page_shows(page, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    found = blocks(page)
    for n, (lang, text) in enumerate(found):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(text, f"{page}:block{n}", "exec"), namespace)  # noqa: S102 (our own docs)
        if n + 1 < len(found) and found[n + 1][0] == "text":
            shown = found[n + 1][1]
            assert [line.rstrip() for line in out.getvalue().splitlines()] == \
                   [line.rstrip() for line in shown.splitlines()], f"{page} block {n}: printed output differs"


@pytest.mark.parametrize("english", sorted(p for p in (DOCS / "tutorials").glob("*.md") if p.name != "index.md"),
                         ids=lambda p: p.name)
def test_a_chinese_tutorial_page_runs_the_english_pages_code(english):
    chinese = DOCS / "zh" / "tutorials" / english.name
    assert chinese.is_file(), f"no Chinese page for {english.name}"
    code = lambda page: [(lang, without_comments(text)) for lang, text in blocks(page)]  # noqa: E731
    assert code(chinese) == code(english)


def test_the_chinese_quick_start_is_the_readmes():
    shell = [text for lang, text in blocks(DOCS / "zh" / "index.md") if lang == "bash"]
    assert shell and shell[0] in readme_commands()


BUILD = "python -m attnapps docs --build-only"  # how-to/docs.md's command: the build test below runs it


@pytest.mark.slow
def test_the_site_builds_without_warnings():
    """The documented build command (warnings are errors), run once, here, for the docs page and for CI."""
    r = subprocess.run([sys.executable, *BUILD.split()[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    site = DOCS / "_build" / "html"  # where the command builds
    config = (site / "reference" / "_generated" / "config-translation.html").read_text(encoding="utf-8")
    assert "trainer.max_steps" in config and "model.attention" in config  # generated from the config dataclasses
    api = (site / "reference" / "attention.html").read_text(encoding="utf-8")
    assert "masked_softmax" in api and "Bahdanau" in api  # from the docstrings
    served = (site / "reference" / "_generated" / "serve-api.html").read_text(encoding="utf-8")
    assert "/v1/{task}/predict" in served and "several input texts" in served  # from the OpenAPI schema
    outputs = (site / "reference" / "_generated" / "outputs.html").read_text(encoding="utf-8")
    assert "test_hypotheses.txt" in outputs and "diag.tau_grad" in outputs and "generate.tokens_per_sec_cached" in outputs
    errors = (site / "reference" / "_generated" / "errors.html").read_text(encoding="utf-8")
    assert "DIR/mt/train.tsv:2: expected 'source&lt;TAB&gt;target'" in errors  # caused when the page was built
    assert "attnapps-errors-" not in errors and "What to do:" in errors


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "bash" for lang, _ in blocks(p)) and
                                  p.relative_to(DOCS).parts[0] != "zh"], ids=lambda p: p.relative_to(DOCS).as_posix())
def test_shell_blocks_run_as_written_at_a_tiny_budget(page, tmp_path):
    """Each page in a fresh folder, its blocks in order, with ``python`` the test's interpreter and the
    repository importable (as in a clone with the environment activated). The Chinese pages' commands are
    the English pages' (tested above) and the README's (run by CI): they are not run twice."""
    env = {**os.environ, "ATTNAPPS_EXTRA_KEYS": TINY, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for n, (lang, text) in enumerate(blocks(page)):
        if lang != "bash" or text in readme_commands() or text.strip() == BUILD:  # the README's two commands: CI
            continue  # runs them; the site's build: test_the_site_builds_without_warnings runs it
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{page} block {n}:\n{text}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


LISTING = re.compile(r"^(`{3,})\{code-block\} bash\n((?::[^\n]*\n)*)\n?(.*?)^\1[ \t]*$", re.S | re.M)
# scripts a listing may name that tests/test_scripts_smoke.py does not run, and why
NOT_SMOKE_RUN = {
    "decision_tables.py": "trains the decision tables for hours",
    "captioning_sets.py": "needs the image sets build_captioning_sets.py downloads",
}


def listings(page: Path) -> list[tuple[str, str]]:
    """``(caption, text)`` of each ``{code-block} bash`` of a page: commands shown, not run as written
    (templates with your paths, several machines, the network, hours of measuring)."""
    out = []
    for _, options, text in LISTING.findall(page.read_text(encoding="utf-8")):
        caption = next((o.split(":", 2)[2].strip() for o in options.splitlines() if o.startswith(":caption:")), "")
        out.append((caption, text))
    return out


def commands(text: str) -> list[list[str]]:
    """A listing's commands as word lists: continuation lines joined, ``#`` comments dropped."""
    import shlex

    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if words:
            out.append(words)
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if listings(p)], ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_listing_says_why_and_its_run_keys_and_scripts_are_real(page):
    """A command a test cannot run as written is shown in a captioned listing. Its ``attnapps.run`` keys
    are checked as the run checks them before it starts (templates' capitals are plain strings), and a
    script it names exists and is run at tiny arguments by ``tests/test_scripts_smoke.py`` (or downloads
    data: ``build_*``; or is listed in NOT_SMOKE_RUN with its reason)."""
    from attnapps.run import _register_primary, expand_aliases, validate

    smoke = (ROOT / "tests" / "test_scripts_smoke.py").read_text(encoding="utf-8")
    _register_primary()
    for caption, text in listings(page):
        assert caption, f"{page}: a listing without a :caption: saying why it is not run as written"
        for words in commands(text):
            for w in words:
                script = re.match(r"^(?:\./)?scripts/([\w.-]+)$", w)
                if script:
                    name = script.group(1)
                    assert (ROOT / "scripts" / name).is_file(), f"{page}: no scripts/{name}"
                    assert name in smoke or name.startswith("build_") or name in NOT_SMOKE_RUN, \
                        f"{page}: scripts/{name} is not run by tests/test_scripts_smoke.py"
            if "attnapps.run" in words:
                keys = [w for w in words[words.index("attnapps.run") + 1:] if w not in ("-m", "--multirun")]
                if any(c in w for w in keys for c in "<>[]$"):
                    continue  # a template with shell parts left for the reader
                validate(expand_aliases(keys))
