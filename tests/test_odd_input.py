"""Odd but valid input simply works; arbitrary input gives data or one clear error, never a traceback.

The property tests (hypothesis) feed every data adapter arbitrary bytes and arbitrary line/JSON
structures: the adapter must either return data or raise :class:`AttnappsError` (whose message the
entry points print as one line). Any other exception is a bug.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnapps.data import WordTokenizer
from attnapps.data.files import ErrorPolicy
from attnapps.errors import AttnappsError
from attnapps_tasks.captioning.data import load_karpathy, tokenize
from attnapps_tasks.captioning.features import extract, load_pixels
from attnapps_tasks.classification.data import load_examples
from attnapps_tasks.generation.data import load_corpus
from attnapps_tasks.translation.data import load_pairs

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------- odd but valid
def test_crlf_and_bom_tsv(tmp_path):
    (tmp_path / "train.tsv").write_bytes("\ufeffthe cat\tdie Katze\r\na dog\tein Hund\r\n".encode())
    (tmp_path / "test.tsv").write_bytes(b"a bird\tein Vogel\r\n")
    splits, _ = load_pairs(str(tmp_path), "en", "de")
    assert splits["train"] + splits["valid"] == [("the cat", "die Katze"), ("a dog", "ein Hund")] or \
        sorted(splits["train"] + splits["valid"]) == sorted([("the cat", "die Katze"), ("a dog", "ein Hund")])
    assert splits["test"] == [("a bird", "ein Vogel")]


def test_csv_with_quoted_newlines_bom_and_crlf(tmp_path):
    rows = 'text,label\r\n"first line\r\nsecond line, with comma",pos\r\nplain,neg\r\n"say ""hi""",pos\r\n'
    (tmp_path / "train.csv").write_bytes(("\ufeff" + rows).encode())
    (tmp_path / "test.csv").write_bytes(rows.encode())
    splits, labels, _ = load_examples(str(tmp_path), "csv", seed=0)
    everything = splits["train"] + splits["valid"]
    assert labels == ["neg", "pos"]
    assert ("first line\nsecond line, with comma", "pos") in everything
    assert ('say "hi"', "pos") in everything and ("plain", "neg") in everything


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "1", "LA", "I;16", "F"])
@pytest.mark.parametrize("size", [(1, 1), (37, 5)])
def test_any_image_mode_and_size_loads_as_rgb(tmp_path, mode, size):
    from PIL import Image

    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16", "F") else "x.png")
    Image.new(mode, size).save(path)
    pixels = load_pixels(path, 16)
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.uint8


def test_transparent_palette_png_over_white(tmp_path):
    from PIL import Image

    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0] * 256)
    im.info["transparency"] = 0
    im.save(tmp_path / "t.png", transparency=0)
    assert load_pixels(tmp_path / "t.png", 4).min() == 255  # transparent black -> white


def test_very_long_line_is_filtered_and_counted(tmp_path):
    from omegaconf import OmegaConf

    from attnapps_tasks.translation.task import TranslationConfig, TranslationTask

    long = " ".join(["word"] * 5000)
    lines = [f"cat {i}\tKatze {i}" for i in range(40)] + [f"{long}\t{long}"]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.tsv").write_text("cat\tKatze\n")
    (tmp_path / "valid.tsv").write_text("cat\tKatze\n")
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig),
                          OmegaConf.from_dotlist([f"data.path={tmp_path}", "tokenizer.vocab_size=40"]))
    task = TranslationTask(cfg)
    data = task.build_data()
    assert task.filtered == 1 and len(data["train"]) == 40


def test_unicode_everywhere(tmp_path):
    text = "".join(f"{w} 日本語のテキスト ✓\t{lab}\n" for w, lab in [("très bien", "😀"), ("schlecht", "ñandú")] * 5)
    (tmp_path / "train.tsv").write_text(text)
    (tmp_path / "test.tsv").write_text(text)
    splits, labels, _ = load_examples(str(tmp_path), seed=0)
    assert labels == sorted(["😀", "ñandú"])
    tok = WordTokenizer().fit([t for t, _ in splits["train"]])
    # Japanese has no spaces between words: one token per character (kana and kanji alike)
    assert "très" in tok.vocab.itos and {"日", "本", "語", "の", "テ", "キ", "ス", "ト"} <= set(tok.vocab.itos)
    assert "日本語のテキスト" not in tok.vocab.itos
    assert tokenize("Ein Café für Ärzte, 2 Äpfel") == ["ein", "café", "für", "ärzte", "2", "äpfel"]
    corpus = tmp_path / "c.txt"
    corpus.write_text("Ünïcödé 🙂 text\n" * 100)
    texts, _, _ = load_corpus(str(corpus))
    assert "🙂" in texts["train"]


# ---------------------------------------------------------------------------------- property tests
def clean(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()


def data_or_clear_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except AttnappsError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), msg  # one line
        return None


LINES = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), max_size=8)
BYTES = st.binary(max_size=200)
FILE = st.one_of(BYTES, LINES.map(lambda ls: "\n".join(ls).encode()),
                 LINES.map(lambda ls: "\r\n".join(ls).encode("utf-16")),
                 LINES.map(lambda ls: "\n".join("\t".join([x, x[::-1]]) for x in ls).encode()))


@PROPERTY
@given(train=FILE, test=FILE, on_error=st.sampled_from(["raise", "skip"]))
def test_translation_adapter_never_crashes(tmp_path, train, test, on_error):
    clean(tmp_path)
    (tmp_path / "train.tsv").write_bytes(train)
    (tmp_path / "test.tsv").write_bytes(test)
    data_or_clear_error(load_pairs, str(tmp_path), "en", "de", on_error)
    (tmp_path / "train.tsv").unlink()
    (tmp_path / "train.en").write_bytes(train)
    (tmp_path / "train.de").write_bytes(test)
    data_or_clear_error(load_pairs, str(tmp_path), "en", "de", on_error)


@PROPERTY
@given(train=FILE, test=FILE, fmt=st.sampled_from(["tsv", "csv"]), on_error=st.sampled_from(["raise", "skip"]))
def test_classification_adapter_never_crashes(tmp_path, train, test, fmt, on_error):
    clean(tmp_path)
    header = b"text,label\n" if fmt == "csv" else b""
    (tmp_path / f"train.{fmt}").write_bytes(header + train)
    (tmp_path / f"test.{fmt}").write_bytes(header + test)
    data_or_clear_error(load_examples, str(tmp_path), fmt, on_error=on_error)


@PROPERTY
@given(text=FILE, gz=st.booleans(), on_error=st.sampled_from(["raise", "skip"]))
def test_generation_adapter_never_crashes(tmp_path, text, gz, on_error):
    clean(tmp_path)
    path = tmp_path / ("c.txt.gz" if gz else "c.txt")
    path.write_bytes(gzip.compress(text) if gz and text[:1] != b"x" else text)
    data_or_clear_error(load_corpus, str(path), on_error=on_error)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
ENTRY = st.fixed_dictionaries({}, optional={
    "filename": st.one_of(st.just("a.png"), st.just("missing.png"), JSON), "split": st.one_of(
        st.sampled_from(["train", "val", "test", "restval", "other"]), JSON),
    "sentences": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({}, optional={"raw": JSON, "tokens": JSON}), JSON),
                                    max_size=3), JSON),
    "filepath": JSON, "width": JSON, "height": JSON, "objects": JSON})


@PROPERTY
@given(doc=st.one_of(JSON, st.fixed_dictionaries({"images": st.lists(ENTRY, max_size=5)})), raw=st.booleans(),
       junk=BYTES, on_error=st.sampled_from(["raise", "skip"]))
def test_captioning_adapter_never_crashes(tmp_path, doc, raw, junk, on_error):
    clean(tmp_path)
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    (tmp_path / "dataset.json").write_bytes(junk if raw else json.dumps(doc).encode())
    data_or_clear_error(load_karpathy, tmp_path, on_error)


@PROPERTY
@given(junk=BYTES, on_error=st.sampled_from(["raise", "skip"]))
def test_image_decoding_never_crashes(tmp_path, junk, on_error):
    (tmp_path / "x.jpg").write_bytes(junk)
    out = data_or_clear_error(extract, [tmp_path / "x.jpg"], None, 8, ErrorPolicy(on_error), tmp_path / "x.bin",
                              progress=False)
    if out is not None:
        assert out["shape"][1:] == [3, 8, 8] or out["bad"]
        assert (tmp_path / "x.bin").stat().st_size == out["shape"][0] * 3 * 8 * 8  # the rows written
