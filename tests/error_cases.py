"""Every error a user can cause, as a catalog: how to cause it, the fragments its one line must hold, and
what to do about it.

``tests/test_bad_input.py`` runs each case through the real entry points and checks its line; the
documentation's error reference (``docs/_ext/attnapps_docs.py``) runs each case the same way when the
site is built and prints the line the code gives today beside :data:`GUIDE`'s advice -- so the page is
made by the code, never copied from it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
from pathlib import Path

from attnapps import predict as predict_cli
from attnapps import run as run_cli_module

GOOD_TSV_PAIRS = "".join(f"the cat {i}\tdie katze {i}\n" for i in range(30))
GOOD_CLASSES = "".join(f"{'good fine great' if i % 2 else 'bad awful poor'} film {i}\t{'pos' if i % 2 else 'neg'}\n"
                       for i in range(40))
BAD_UTF8_LINES = b"fine\n\xff\xfe\n"
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
     ["no test split (test.tsv or test.<src_lang>/test.<tgt_lang>)"]),
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


# ---------------------------------------------------------------------------------- run directory, predict, resume
def trained_run(tmp: Path) -> dict:
    """A tiny finished classification run (2 updates): what the predict and resume cases start from."""
    data = classification_dir(tmp)
    run = tmp / "run"
    argv = ["task=classification", f"data.path={data}", f"hydra.run.dir={run}", "trainer.progress=false",
            "trainer.max_steps=2", "trainer.max_minutes=0", "model.arch=ngram_attention", "model.buckets=64",
            "report.baseline=false", "report.examples=0"]
    code, err = call(run_cli_module.main, argv)
    assert code == 0, err
    return {"run": run, "data": data, "argv": argv, "tmp": tmp}


def copy_run(trained: dict, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(trained["run"], run)
    return run


def truncated_best(trained: dict, tmp: Path) -> Path:
    run = copy_run(trained, tmp)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    return run


def changed_data(trained: dict, tmp: Path) -> list[str]:
    run, data = copy_run(trained, tmp), tmp / "data"
    shutil.copytree(trained["data"], data)
    write(data / "train.tsv", GOOD_CLASSES + "one more good film\tpos\n")
    keep = [a for a in trained["argv"] if not a.startswith(("data.path=", "hydra.run.dir="))]
    return [*keep, f"data.path={data}", f"hydra.run.dir={run}", "trainer.resume=true", "trainer.max_steps=3"]


def without_run_dir(trained: dict) -> list[str]:
    return [a for a in trained["argv"] if not a.startswith("hydra.run.dir=")]


# (id, entry point, builder(tmp, trained) -> argv, expected fragments); ``trained()`` gives the tiny finished
# run the predict and resume cases start from (built on the first call, by whoever runs the cases)
RUN_CASES = [
    ("run-dir-blocked", "run", lambda t, trained: ["task=translation", f"hydra.run.dir={write(t / 'file', 'x') / 'run'}"],
     ["hydra.run.dir=", "cannot create the run directory"]),
    ("run-dir-is-a-file", "run", lambda t, trained: ["task=translation", f"hydra.run.dir={write(t / 'file', 'x')}"],
     ["exists and is not a directory"]),
    ("predict-no-run", "predict", lambda t, trained: ["task=classification", f"run={t / 'missing'}"],
     ["no such run directory"]),
    ("predict-not-a-run", "predict", lambda t, trained: ["task=classification", f"run={t}"], ["no checkpoints/best.pt"]),
    ("predict-wrong-task", "predict", lambda t, trained: ["task=translation", f"run={trained()['run']}"],
     ["trained for task=classification, not task=translation"]),
    ("predict-unknown-option", "predict", lambda t, trained: ["task=classification", f"run={trained()['run']}", "topp=3"],
     ["unknown predict option 'topp'"]),
    ("predict-bad-option", "predict", lambda t, trained: ["task=classification", f"run={trained()['run']}", "top=-1"],
     ["predict option 'top'", ">= 0"]),
    ("predict-bad-input", "predict", lambda t, trained: [
        "task=classification", f"run={trained()['run']}", f"input={write(t / 'bad.txt', BAD_UTF8_LINES)}"],
     ["bad.txt:2", "not valid UTF-8"]),
    ("predict-damaged-checkpoint", "predict", lambda t, trained: [f"run={truncated_best(trained(), t)}"],
     ["best.pt", "cannot load checkpoint"]),
    ("resume-nothing-to-resume", "run", lambda t, trained: [
        *without_run_dir(trained()), f"hydra.run.dir={t / 'fresh'}", "trainer.resume=true"],
     ["trainer.resume=true", "last.pt does not exist"]),
    ("resume-other-task", "run", lambda t, trained: [
        "task=generation", f"hydra.run.dir={t / 'g'}", f"trainer.resume={trained()['run']}"],
     ["checkpoint is for task 'classification', not 'generation'"]),
    ("resume-data-changed", "run", lambda t, trained: changed_data(trained(), t),
     ["the data changed since the checkpoint", "train.tsv", "trainer.resume_force=true"]),
]

ENTRY = {"run": run_cli_module.main, "predict": predict_cli.main}
COMMAND = {"run": "python -m attnapps.run", "predict": "python -m attnapps.predict"}


def data_argv(case, tmp: Path) -> list[str]:
    """The command line of a DATA_CASES case, its bad input built under ``tmp``."""
    _, task, build, _ = case
    extra = [f"data.path={x}" if isinstance(x, Path) else x for x in build(tmp)]
    cache = [f"data.cache_dir={tmp / 'cache'}"] if task in ("generation", "captioning") else []
    return run_args(tmp, task, *cache, *extra)


def config_argv(case, tmp: Path) -> list[str]:
    """The command line of a CONFIG_CASES case; its data path never exists (nothing may be read)."""
    _, argv, _ = case
    data = [] if "task=summarization" in argv else [f"data.path={tmp / 'data-never-read'}"]
    return [*argv, *data, f"hydra.run.dir={tmp / 'run'}"]


# id -> (what happened, what to do): the error reference's text beside the line the code prints
GUIDE = {
    # config keys
    "unknown-key": ("A key that does not exist", "Check the spelling against `python -m attnapps.run task=NAME "
                    "--help` or the task's key reference; keys are `section.name`."),
    "wrong-type": ("A value of the wrong type", "Give the type the key has (`--help` shows it: an integer here)."),
    "bad-choice": ("A value outside a key's choices", "Pick one of the values the line lists."),
    "bad-choice-arch": ("An architecture the task does not have", "Pick one of the architectures the line lists; "
                        "each task's page describes them."),
    "dropout-range": ("A number outside its range", "Dropout is a probability below 1: give a value in [0, 1)."),
    "accumulate-zero": ("A count that must be positive", "Give 1 (no accumulation) or more."),
    "negative-lr": ("A negative learning rate", "Give a positive rate, or 0 where the task chooses one itself."),
    "heads-divide": ("Heads that do not divide the width", "Choose `model.heads` dividing the model's width "
                     "(or change the width)."),
    "heads-divide-gpt": ("Heads that do not divide the width (GPT)", "Choose `model.heads` dividing `model.d_model`."),
    "pooling-arch": ("A key the chosen architecture does not use", "Drop the key, or choose an architecture that "
                     "uses it (the line names them)."),
    "device": ("A device name torch does not know", "Use `auto`, `cpu`, `cuda` or `cuda:N`."),
    "unknown-task": ("A task that is not registered", "`python -m attnapps.run --help` lists the tasks; a task of "
                     "your own is registered through `ATTNAPPS_TASKS` or an entry point (How-to: your own task)."),
    "sweep-value": ("A bad value inside a sweep (`-m`)", "Every comma-separated value of a swept key must be valid; "
                    "the line names the key."),
    "transformer-memory": ("A captioning key of another architecture", "The retrieved memory belongs to "
                           "`show_attend_tell`: drop the key or switch architecture."),
    "key-of-another-arch": ("A translation key of another architecture", "The line lists the keys the chosen "
                            "architecture has; the Transformer always uses multi-head attention."),
    "key-of-another-arch-gen": ("A generation key of another architecture", "Positions belong to "
                                "`model.arch=transformer`: set it, or drop the key."),
    "top-p-range": ("A sampling option out of range", "`sample.top_p` is a probability in (0, 1]."),
    # translation data
    "mt-no-tab": ("A TSV line without a tab", "Each line is `source<TAB>target`; fix the named line, or give "
                  "`data.on_error=skip` to skip and count such lines."),
    "mt-empty-side": ("A pair with an empty side", "Fill or remove the line (or `data.on_error=skip`)."),
    "mt-bad-utf8": ("Bytes that are not UTF-8", "Convert the file to UTF-8 (`iconv -f LATIN1 -t UTF-8`), or "
                    "`data.on_error=skip`."),
    "mt-utf16": ("A UTF-16 file", "Convert it: `iconv -f UTF-16 -t UTF-8 in > out`."),
    "mt-missing-test": ("No test split", "Add `test.tsv` (or `test.<src>` + `test.<tgt>`); valid may be carved "
                        "from train, test may not."),
    "mt-missing-train": ("No training split", "Add `train.tsv` or the line-aligned `train.<src>` + `train.<tgt>`."),
    "mt-empty-valid": ("An empty split", "Give the split at least one pair, or remove the file to carve valid from "
                       "train."),
    "mt-unaligned": ("Line-aligned files of different lengths", "The two files must have one line per sentence, "
                     "in the same order: find the missing or extra line."),
    "mt-no-target-file": ("A source file without its target file", "Add `train.<tgt>` beside `train.<src>`, or set "
                          "`data.src_lang=` / `data.tgt_lang=` to the files' suffixes."),
    "mt-not-a-dir": ("`data.path` is not a folder", "Give the folder holding the split files."),
    "mt-vocab-too-small": ("A vocabulary smaller than the characters", "Raise `tokenizer.vocab_size`: sentencepiece "
                           "needs room for every character it keeps."),
    # classification data
    "cls-no-tab": ("A TSV line without a tab", "Each line is `text<TAB>label`; fix the line or "
                   "`data.on_error=skip`."),
    "cls-unseen-label": ("A test label training never saw", "Every valid/test label must occur in train: add "
                         "training examples of it, or drop those lines."),
    "cls-one-label": ("Only one label", "A classifier needs at least two classes in the training data."),
    "cls-csv-missing-column": ("A CSV without the expected column", "Name your columns with `data.text_column=` "
                               "and `data.label_column=`."),
    "cls-csv-empty-label": ("A CSV row with an empty label", "Fill the label, or `data.on_error=skip`."),
    "cls-imdb-no-test": ("An IMDB-layout folder without `test/`", "The `imdb` layout is `train/<label>/*.txt` and "
                         "`test/<label>/*.txt`."),
    "cls-empty-test": ("An empty split", "Give the split at least one example."),
    "cls-utf16": ("A UTF-16 file", "Convert it to UTF-8 (`iconv -f UTF-16 -t UTF-8`)."),
    # generation data
    "gen-missing-file": ("No such file", "Check `data.path`: a text file, or a folder with `train.txt` "
                         "(+ `valid.txt`, `test.txt`)."),
    "gen-empty-text": ("An empty text", "Give the split some text."),
    "gen-bad-utf8": ("Bytes that are not UTF-8", "Convert the file to UTF-8, or `data.on_error=skip` to drop the line."),
    "gen-corrupt-gz": ("A damaged gzip file", "Download or compress the file again (`gzip -t` checks it)."),
    "gen-too-short": ("A text shorter than the context", "Give more text, or a smaller `model.context=`."),
    "gen-wikitext-missing": ("A WikiText folder without its files", "The `wikitext` format wants `wiki.train.raw`, "
                             "`wiki.valid.raw`, `wiki.test.raw`."),
    "gen-utf16": ("A UTF-16 file", "Convert it to UTF-8 (`iconv -f UTF-16 -t UTF-8`)."),
    # captioning data
    "cap-invalid-json": ("`dataset.json` is not valid JSON", "Fix the JSON at the named line and column "
                         "(`python -m json.tool dataset.json` shows it)."),
    "cap-not-karpathy": ("JSON that is not the Karpathy format", 'The file is `{"images": [{"filename", "split", '
                         '"sentences": [{"raw"}]}, ...]}`.'),
    "cap-missing-image": ("An image file that is missing", "Put the image where `filename` (and `filepath`) say, "
                          "under `data.image_dir`, or remove its entry."),
    "cap-corrupt-image": ("An image that cannot be read", "Replace the file; the line names it."),
    "cap-truncated-image": ("A truncated image", "Replace the file (a download cut short)."),
    "cap-no-captions": ("An image without captions", "Give the image at least one sentence, or remove it."),
    "cap-unknown-split": ("A split name the format does not have", "Use `train`, `val`/`valid`, `test` or "
                          "`restval`."),
    "cap-wrong-types": ("A field of the wrong type", "Image sizes and boxes are integers."),
    "cap-no-train": ("No training images", "Mark some images `\"split\": \"train\"`."),
    "cap-missing-json": ("No `dataset.json`", "`data.path` is a folder with the Karpathy-format `dataset.json` "
                         "and the images."),
    # run directory, predict, resume
    "run-dir-blocked": ("A run directory that cannot be created", "Give `hydra.run.dir=` a path you can write."),
    "run-dir-is-a-file": ("A run directory that is a file", "Give `hydra.run.dir=` a folder's path."),
    "predict-no-run": ("`run=` does not exist", "Give the run directory a training run wrote (its `report.md` "
                       "says where)."),
    "predict-not-a-run": ("`run=` is not a finished run", "A finished run has `checkpoints/best.pt`; a run still "
                          "training has not written it yet."),
    "predict-wrong-task": ("A run of another task", "Drop `task=` (the run knows its task) or name the right one."),
    "predict-unknown-option": ("An option predict does not have", "`python -m attnapps.predict task=NAME --help` "
                               "lists the options."),
    "predict-bad-option": ("A predict option out of range", "Give a value the line allows."),
    "predict-bad-input": ("Input that is not UTF-8", "Convert the input file to UTF-8."),
    "predict-damaged-checkpoint": ("A checkpoint that cannot be loaded", "The file is damaged or not ours: copy the "
                                   "run again. Checkpoints load with `weights_only=True`, so a file holding "
                                   "arbitrary pickled objects is refused, never executed."),
    "resume-nothing-to-resume": ("Nothing to resume", "`trainer.resume=true` continues the run in "
                                 "`hydra.run.dir=`: give the directory of the run that stopped."),
    "resume-other-task": ("A checkpoint of another task", "Resume with the task the checkpoint was trained for."),
    "resume-data-changed": ("The data changed since the checkpoint", "Resume on the data the run started with, or "
                            "`trainer.resume_force=true` to go on with the new data (the run is then no longer an "
                            "exact continuation)."),
}

SECTIONS = [("Config keys", "CONFIG"), ("Translation data", "mt-"), ("Classification data", "cls-"),
            ("Generation data", "gen-"), ("Captioning data", "cap-"), ("Run directory, predict and resume", "RUN")]


def run_case(kind: str, case, tmp: Path, trained=None) -> tuple[list[str], str, int, str]:
    """Cause one case's error under ``tmp``: the command's keys, the entry point's name, exit status,
    stderr. ``trained``: a function giving :func:`trained_run`'s run, for the RUN_CASES that need one."""
    if kind == "data":
        entry, argv = "run", data_argv(case, tmp)
    elif kind == "config":
        entry, argv = "run", config_argv(case, tmp)
    else:
        entry, argv = case[1], case[2](tmp, trained)
    code, err = call(ENTRY[entry], argv)
    return argv, entry, code, err
