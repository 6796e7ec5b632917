"""A fifth task, registered from tests/ (tests/fifth_task.py, the README's smallest complete task), goes
through every entry point with no edit to the core: attnapps.run, attnapps.predict, report.html,
attnapps.study and attnapps.serve. And the core names none of the four tasks outside docs and comments."""

import ast
import json
import random
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

FIFTH = {"ATTNAPPS_TASKS": "tests.fifth_task"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fifth") / "run"
    r = run_cli("task=largest", "trainer.progress=false", f"hydra.run.dir={out}", env_extra=FIFTH)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def sequences(n, seed=5):
    rng = random.Random(seed)
    return [[rng.randrange(10) for _ in range(rng.randint(2, 8))] for _ in range(n)]


def test_run_learns_and_writes_every_output(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test.accuracy"] >= 0.9 and metrics["valid.accuracy"] >= 0.9  # a uniform guess: ~0.1
    assert "task_name: largest" in (run / "config.yaml").read_text()
    for name in ("report.md", "provenance.json", "log.csv", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    page = (run / "report.html").read_text()
    data = json.loads(re.search(r"<script type='application/json' id='data'>(.*?)</script>", page, re.S).group(1))
    example = data["examples"][0]
    assert example["views"][0]["name"] == "attention" and len(example["views"][0]["heads"][0][0]) == len(
        example["seqs"]["input"])


def test_predict_gives_the_largest_digit_of_each_line(run, tmp_path):
    seqs = sequences(60)
    (tmp_path / "in.txt").write_text("".join(" ".join(map(str, s)) + "\n" for s in seqs))
    r = run_cli("task=largest", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.txt'}",
                module="attnapps.predict", env_extra=FIFTH)
    assert r.returncode == 0, r.stderr
    got = (tmp_path / "out.txt").read_text().splitlines()
    assert len(got) == len(seqs) and sum(int(g) == max(s) for g, s in zip(got, seqs)) >= 0.9 * len(seqs)
    bad = run_cli(f"run={run}", "beam=2", module="attnapps.predict", env_extra=FIFTH)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: unknown predict option 'beam' for task=largest; known: input, output")


def test_serve_answers_with_the_output_and_its_attention(run):
    from fastapi.testclient import TestClient

    import tests.fifth_task  # noqa: F401  (registers task=largest in this process)
    from attnapps.serve import create_app, load_runs

    runs = load_runs([str(run)], batching="lock")
    client = TestClient(create_app(runs))
    listed = client.get("/v1/runs").json()
    assert [(r["task"], r["input"]) for r in listed["runs"]] == [("largest", "text")]
    seqs = sequences(20, seed=6)
    answer = client.post("/v1/largest/predict", json={"texts": [" ".join(map(str, s)) for s in seqs]})
    assert answer.status_code == 200, answer.text
    outputs, examples = answer.json()["outputs"], answer.json()["examples"]
    assert sum(int(o) == max(s) for o, s in zip(outputs, seqs)) >= 0.9 * len(seqs)
    for e, s in zip(examples, seqs):
        weights = e["views"][0]["heads"]  # (heads, 1 query, len(s) digits), per mille
        assert len(weights[0][0]) == len(s) and all(abs(sum(h[0]) - 1000) <= len(s) for h in weights)


@pytest.mark.slow
def test_study_quick_compares_variants_of_the_fifth_task(tmp_path):
    r = run_cli("tasks=largest", "attention=dot", "seeds=2", "study.preset=quick", f"out={tmp_path}",
                module="attnapps.study", env_extra=FIFTH, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    assert "## largest" in report and "| dot |" in report and "| general |" in report
    assert len(list(tmp_path.glob("runs/largest/*/seed_*/metrics.json"))) == 4  # dot and the default, 2 seeds


def code_strings(path: Path) -> list[str]:
    """The string constants of a module other than docstrings (and other bare string statements)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_core_names_no_task_outside_docs_and_comments():
    names = re.compile(r"\b(translation|classification|captioning|generation)\b")
    found = {f"{p.relative_to(ROOT)}: {s}" for p in (ROOT / "attnapps").rglob("*.py") for s in code_strings(p)
             if names.search(s)}
    assert not found


def test_the_docs_show_the_smallest_task_whole_and_it_is_under_80_lines():
    code = (ROOT / "tests" / "fifth_task.py").read_text()
    assert len(code.splitlines()) < 80
    page = (ROOT / "docs" / "how-to" / "own-task.md").read_text()
    assert "```{literalinclude} ../../tests/fifth_task.py\n:language: python\n```" in page  # the file, whole
