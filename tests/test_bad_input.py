"""Every error a user can cause: exit status 2, one line, no traceback, and the culprit named.

The cases run the real entry points (``attnapps.run.main``, ``attnapps.predict.main``) in-process, which
is what ``python -m`` calls, so the battery stays fast; ``tests/training/test_cli.py`` checks the same
contract through real subprocesses. Each case builds its bad input in a fresh folder.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from attnapps import predict as predict_cli
from attnapps import run as run_cli_module

GOOD_TSV_PAIRS = "".join(f"the cat {i}\tdie katze {i}\n" for i in range(30))
GOOD_CLASSES = "".join(f"{'good fine great' if i % 2 else 'bad awful poor'} film {i}\t{'pos' if i % 2 else 'neg'}\n"
                       for i in range(40))
TEXT = "It is a truth universally acknowledged.\n" * 40


def call(entry, argv: list[str]) -> tuple[int, str]:
    """Run an entry point as ``python -m`` would; return (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = entry(list(argv))
        except SystemExit as e:
            code = e.code
    return code or 0, err.getvalue()


def assert_one_line_error(code: int, stderr: str, *expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr[-3000:]
    for e in expected:
        assert e in lines[0], (e, lines[0])


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def translation_dir(tmp: Path, **files) -> Path:
    d = tmp / "mt"
    base = {"train.tsv": GOOD_TSV_PAIRS, "valid.tsv": GOOD_TSV_PAIRS[:60], "test.tsv": GOOD_TSV_PAIRS[:60]}
    for name, content in {**base, **files}.items():
        if content is not None:
            write(d / name, content)
    return d


def classification_dir(tmp: Path, ext: str = "tsv", **files) -> Path:
    d = tmp / "cls"
    base = {f"train.{ext}": GOOD_CLASSES, f"test.{ext}": "".join(GOOD_CLASSES.splitlines(True)[:6])}
    for name, content in {**base, **files}.items():
        if content is not None:
            write(d / name, content)
    return d


def captioning_dir(tmp: Path, edit=None) -> Path:
    from attnapps_tasks.captioning.synthetic import write_synthetic

    d = tmp / "cap"
    write_synthetic(d, seed=1, splits=(("train", 3), ("val", 1), ("test", 1)))
    if edit is not None:
        edit(d)
    return d


def run_args(tmp: Path, task: str, *extra: str) -> list[str]:
    return [f"task={task}", f"hydra.run.dir={tmp / 'run'}", "trainer.progress=false", "trainer.max_steps=2",
            *extra]


def corrupt_first_image(d: Path, data: bytes) -> None:
    doc = json.loads((d / "dataset.json").read_text())
    (d / "images" / doc["images"][0]["filename"]).write_bytes(data)


def edit_json(d: Path, fn) -> None:
    doc = json.loads((d / "dataset.json").read_text())
    fn(doc)
    (d / "dataset.json").write_text(json.dumps(doc))


def truncate_first_image(d: Path) -> None:
    doc = json.loads((d / "dataset.json").read_text())
    p = d / "images" / doc["images"][0]["filename"]
    p.write_bytes(p.read_bytes()[:40])


# (id, task, builder(tmp) -> extra overrides, expected fragments of the error line)
DATA_CASES = [
    # translation
    ("mt-no-tab", "translation", lambda t: [translation_dir(t, **{'train.tsv': 'a b\tc\nno tab here\n'})],
     ["train.tsv:2", "expected 'source<TAB>target'"]),
    ("mt-empty-side", "translation", lambda t: [translation_dir(t, **{'train.tsv': 'a\t\n'})],
     ["train.tsv:1", "empty target side"]),
    ("mt-bad-utf8", "translation", lambda t: [translation_dir(t, **{'train.tsv': b'a\tb\n\xff\xfe x\ty\n'})],
     ["train.tsv:2", "not valid UTF-8"]),
    ("mt-utf16", "translation", lambda t: [translation_dir(t, **{'train.tsv': GOOD_TSV_PAIRS.encode('utf-16')})],
     ["train.tsv:1", "UTF-16"]),
    ("mt-missing-test", "translation", lambda t: [translation_dir(t, **{'test.tsv': None})],
     ["no test split"]),
    ("mt-missing-train", "translation", lambda t: [translation_dir(t, **{'train.tsv': None})],
     ["no train.tsv"]),
    ("mt-empty-valid", "translation", lambda t: [translation_dir(t, **{'valid.tsv': ''})],
     ["the valid split has no usable pairs"]),
    ("mt-unaligned", "translation", lambda t: [
        translation_dir(t, **{'train.tsv': None, 'train.en': 'a\nb\nc\n', 'train.de': 'x\ny\n'})],
     ["train.de", "line-aligned"]),
    ("mt-no-target-file", "translation", lambda t: [
        translation_dir(t, **{'train.tsv': None, 'train.en': 'a\nb\n'})],
     ["train.de", "no aligned .de file"]),
    ("mt-not-a-dir", "translation", lambda t: [t / 'nowhere'], ["nowhere", "not a directory"]),
    ("mt-vocab-too-small", "translation", lambda t: [translation_dir(t), "tokenizer.vocab_size=9"],
     ["tokenizer.vocab_size=9", "sentencepiece"]),
    # classification
    ("cls-no-tab", "classification", lambda t: [classification_dir(t, **{'train.tsv': GOOD_CLASSES + 'no tab\n'})],
     ["train.tsv:41", "no tab"]),
    ("cls-unseen-label", "classification", lambda t: [
        classification_dir(t, **{'test.tsv': 'nice film\tneutral\n'})],
     ["test.tsv:1", "label 'neutral' does not occur in the training data"]),
    ("cls-one-label", "classification", lambda t: [
        classification_dir(t, **{'train.tsv': 'a\tpos\nb\tpos\n', 'test.tsv': 'c\tpos\n'})],
     ["1 label(s); need at least 2"]),
    ("cls-csv-missing-column", "classification", lambda t: [
        classification_dir(t, 'csv', **{'train.csv': 'review,label\nx,pos\n', 'test.csv': 'review,label\nx,pos\n'}),
        "data.format=csv"], ["train.csv:1", "no column 'text'", "data.text_column"]),
    ("cls-csv-empty-label", "classification", lambda t: [
        classification_dir(t, 'csv', **{'train.csv': 'text,label\na,pos\nb,\n', 'test.csv': 'text,label\nx,pos\n'}),
        "data.format=csv"], ["train.csv:3", "empty label"]),
    ("cls-imdb-no-test", "classification", lambda t: [
        write(t / 'imdb' / 'train' / 'pos' / '1.txt', 'good').parent.parent.parent, "data.format=imdb"],
     ["no test split"]),
    ("cls-empty-test", "classification", lambda t: [classification_dir(t, **{'test.tsv': ''})],
     ["the test split has no usable examples"]),
    ("cls-utf16", "classification", lambda t: [
        classification_dir(t, **{'train.tsv': GOOD_CLASSES.encode('utf-16')})], ["train.tsv:1", "UTF-16"]),
    # generation
    ("gen-missing-file", "generation", lambda t: [t / 'none.txt'], ["none.txt", "no such file"]),
    ("gen-empty-text", "generation", lambda t: [write(t / 'g' / 'train.txt', '')],
     ["the train text is empty"]),
    ("gen-bad-utf8", "generation", lambda t: [write(t / 'g.txt', TEXT.encode() + b'x\xff\n' + TEXT.encode())],
     ["g.txt:41", "not valid UTF-8"]),
    ("gen-corrupt-gz", "generation", lambda t: [
        write(t / 'g' / 'train.txt.gz', gzip.compress(TEXT.encode())[:30]).parent],
     ["train.txt.gz", "not a readable gzip file"]),
    ("gen-too-short", "generation", lambda t: [[write(t / 'g' / f'{s}.txt', 'ab cd\n' * 3) for s in
                                               ('train', 'valid', 'test')][0].parent],
     ["/g", "model.context=128 needs at least 129"]),
    ("gen-wikitext-missing", "generation", lambda t: [(t / 'w').mkdir() or t / 'w', "data.format=wikitext"],
     ["wiki.train.raw", "no such file"]),
    ("gen-utf16", "generation", lambda t: [write(t / 'g.txt', TEXT.encode('utf-16'))], ["g.txt", "UTF-16"]),
    # captioning
    ("cap-invalid-json", "captioning", lambda t: [
        captioning_dir(t, lambda d: (d / 'dataset.json').write_text('{\"images\": [}'))],
     ["dataset.json:1", "invalid JSON"]),
    ("cap-not-karpathy", "captioning", lambda t: [
        captioning_dir(t, lambda d: (d / 'dataset.json').write_text('[1, 2]'))],
     ["dataset.json", "Karpathy"]),
    ("cap-missing-image", "captioning", lambda t: [
        captioning_dir(t, lambda d: edit_json(d, lambda doc: doc['images'][0].update(filename='gone.png')))],
     ["dataset.json", "gone.png", "image file missing"]),
    ("cap-corrupt-image", "captioning", lambda t: [
        captioning_dir(t, lambda d: corrupt_first_image(d, b'not an image at all'))], ["png", "cannot"]),
    ("cap-truncated-image", "captioning", lambda t: [captioning_dir(t, truncate_first_image)],
     ["png", "cannot"]),
    ("cap-no-captions", "captioning", lambda t: [
        captioning_dir(t, lambda d: edit_json(d, lambda doc: doc['images'][0].update(sentences=[])))],
     ["dataset.json", "images[0]", "no captions"]),
    ("cap-unknown-split", "captioning", lambda t: [
        captioning_dir(t, lambda d: edit_json(d, lambda doc: doc['images'][0].update(split='holdout')))],
     ["dataset.json", "unknown split 'holdout'"]),
    ("cap-wrong-types", "captioning", lambda t: [
        captioning_dir(t, lambda d: edit_json(d, lambda doc: doc['images'][0].update(width='wide')))],
     ["dataset.json", "images[0]", "must be integers"]),
    ("cap-no-train", "captioning", lambda t: [
        captioning_dir(t, lambda d: edit_json(d, lambda doc: [i.update(split='test') for i in doc['images']]))],
     ["dataset.json", "no training images"]),
    ("cap-missing-json", "captioning", lambda t: [(t / 'empty').mkdir() or t / 'empty'],
     ["dataset.json", "no such file"]),
]

CONFIG_CASES = [
    ("unknown-key", ["task=translation", "model.atention=dot"], ["unknown config key 'model.atention'"]),
    ("wrong-type", ["task=classification", "trainer.batch_size=big"], ["'trainer.batch_size'"]),
    ("bad-choice", ["task=translation", "model.attention=cosine"], ["'model.attention'", "choose one of additive"]),
    ("bad-choice-arch", ["task=generation", "model.arch=rnn"], ["'model.arch'", "lstm_attention, transformer"]),
    ("dropout-range", ["task=translation", "model.dropout=1.5"], ["'model.dropout'", "[0, 1)"]),
    ("accumulate-zero", ["task=generation", "trainer.accumulate=0"], ["'trainer.accumulate'", ">= 1"]),
    ("negative-lr", ["task=captioning", "trainer.lr=-1"], ["'trainer.lr'"]),
    ("heads-divide", ["task=classification", "model.arch=transformer", "model.heads=3"], ["model.heads=3", "divide"]),
    ("heads-divide-gpt", ["task=generation", "model.arch=transformer", "model.d_model=100", "model.heads=3"], ["model.heads=3", "model.d_model=100"]),
    ("pooling-arch", ["task=classification", "model.arch=han", "model.pooling=flatten"], ["model.pooling=flatten", "han"]),
    ("device", ["task=translation", "trainer.device=gpu"], ["'trainer.device'", "cuda:N"]),
    ("unknown-task", ["task=summarization"], ["unknown task 'summarization'"]),
    ("sweep-value", ["-m", "task=translation", "model.layers=1,zero"], ["'model.layers'"]),
    ("transformer-memory", ["task=captioning", "model.arch=transformer", "model.retrieval_k=2"],
     ["model.retrieval_k=2 does not apply to model.arch=transformer", "show_attend_tell"]),
    ("key-of-another-arch", ["task=translation", "model.arch=transformer", "model.attention=dot"],
     ["model.attention=dot does not apply to model.arch=transformer", "its keys: hidden_size"]),
    ("key-of-another-arch-gen", ["task=generation", "model.positions=sinusoidal"],
     ["model.positions=sinusoidal does not apply to model.arch=lstm_attention"]),
    ("top-p-range", ["task=generation", "sample.top_p=0"], ["'sample.top_p'"]),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_line_error_naming_the_file(case, tmp_path):
    _, task, build, expected = case
    extra = [f"data.path={x}" if isinstance(x, Path) else x for x in build(tmp_path)]
    cache = [f"data.cache_dir={tmp_path / 'cache'}"] if task in ("generation", "captioning") else []
    code, err = call(run_cli_module.main, run_args(tmp_path, task, *cache, *extra))
    assert_one_line_error(code, err, *expected)


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
    data = [] if "task=summarization" in argv else [f"data.path={absent}"]
    code, err = call(run_cli_module.main, [*argv, *data, f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line_error(code, err, *expected)
    assert "data-never-read" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_run_directory_that_cannot_be_created(tmp_path):
    blocker = write(tmp_path / "file", "x")
    code, err = call(run_cli_module.main, ["task=translation", f"hydra.run.dir={blocker / 'run'}"])
    assert_one_line_error(code, err, "hydra.run.dir=", "cannot create the run directory")
    code, err = call(run_cli_module.main, ["task=translation", f"hydra.run.dir={blocker}"])
    assert_one_line_error(code, err, "exists and is not a directory")


# ---------------------------------------------------------------------------------- predict and resume
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished classification run (2 updates)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = classification_dir(tmp)
    run = tmp / "run"
    argv = ["task=classification", f"data.path={data}", f"hydra.run.dir={run}", "trainer.progress=false",
            "trainer.max_steps=2", "trainer.max_minutes=0", "model.arch=ngram_attention", "model.buckets=64",
            "report.baseline=false", "report.examples=0"]
    code, err = call(run_cli_module.main, argv)
    assert code == 0, err
    return {"run": run, "data": data, "argv": argv, "tmp": tmp}


class Payload:
    """Unpickling this would create the file ``marker`` (arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def copy_run(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    return run


def test_predict_errors(trained, tmp_path):
    run = trained["run"]
    p = lambda *a: call(predict_cli.main, list(a))  # noqa: E731
    assert_one_line_error(*p("task=classification", f"run={tmp_path / 'missing'}"), "no such run directory")
    assert_one_line_error(*p("task=translation", f"run={run}"), "trained for task=classification, not task=translation")
    assert_one_line_error(*p("task=classification", f"run={tmp_path}"), "no checkpoints/best.pt")
    assert_one_line_error(*p("task=classification", f"run={run}", "topp=3"), "unknown predict option 'topp'")
    assert_one_line_error(*p("task=classification", f"run={run}", "top=-1"), "predict option 'top'", ">= 0")
    assert_one_line_error(*p("task=classification", f"run={run}", "top=many"), "predict option 'top'")
    assert_one_line_error(*p("task=classification", f"run={run}", f"input={tmp_path / 'none.txt'}"),
                          "none.txt", "no such file")
    bad = write(tmp_path / "bad.txt", b"fine\n\xff\xfe\n")
    assert_one_line_error(*p("task=classification", f"run={run}", f"input={bad}"), "bad.txt:2", "not valid UTF-8")
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
    argv = [a for a in trained["argv"] if not a.startswith("hydra.run.dir=")]
    code, err = call(run_cli_module.main, [*argv, f"hydra.run.dir={run}", "trainer.resume=true", "trainer.max_steps=4"])
    assert_one_line_error(code, err, "last.pt", "cannot load checkpoint")
    assert not marker.exists()


def test_resume_errors(trained, tmp_path):
    argv = [a for a in trained["argv"] if not a.startswith("hydra.run.dir=")]
    code, err = call(run_cli_module.main, [*argv, f"hydra.run.dir={tmp_path / 'fresh'}", "trainer.resume=true"])
    assert_one_line_error(code, err, "trainer.resume=true", "last.pt does not exist")
    code, err = call(run_cli_module.main, [*argv, f"hydra.run.dir={tmp_path / 'x'}", f"trainer.resume={tmp_path / 'nope.pt'}"])
    assert_one_line_error(code, err, "nope.pt", "no checkpoint")
    # another task's checkpoint
    code, err = call(run_cli_module.main, ["task=generation", f"hydra.run.dir={tmp_path / 'g'}",
                                           f"trainer.resume={trained['run']}"])
    assert_one_line_error(code, err, "checkpoint is for task 'classification', not 'generation'")
    # the data changed since the checkpoint: refused unless forced
    run = copy_run(trained, tmp_path)
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    write(data / "train.tsv", GOOD_CLASSES + "one more good film\tpos\n")
    argv = [a for a in argv if not a.startswith("data.path=")] + [f"data.path={data}", f"hydra.run.dir={run}",
                                                                  "trainer.resume=true", "trainer.max_steps=3"]
    code, err = call(run_cli_module.main, argv)
    assert_one_line_error(code, err, "the data changed since the checkpoint", "train.tsv", "trainer.resume_force=true")
    code, err = call(run_cli_module.main, argv + ["trainer.resume_force=true"])
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["train.steps"] == 3
