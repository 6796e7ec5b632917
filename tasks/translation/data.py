"""Translation data: sentence pairs from TSV files or line-aligned parallel files.

Layouts under ``data.path=DIR`` (the embedded default is ``data/translation/``):

* ``DIR/{train,valid,test}.tsv`` -- one ``source<TAB>target`` pair per line, UTF-8
* ``DIR/train.<src_lang>`` + ``DIR/train.<tgt_lang>`` (and ``valid``/``val``/``dev``,
  ``test``/``test2016``/``test_2016_flickr``) -- line-aligned files as Multi30k and IWSLT ship them

A missing valid split is carved from train (5%, with the seed); a missing test split is an error.
Bad lines (no tab, empty side, bad UTF-8, unequal line counts) raise a :class:`DataError` naming file
and line, or are skipped and counted with ``data.on_error=skip``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from attnapps.data import scripts
from attnapps.data.files import ErrorPolicy, SPLIT_NAMES, carve, carve_indices, data_dir, find_split, read_lines
from attnapps.errors import DataError

Pair = tuple[str, str]


def read_tsv(path: Path, policy: ErrorPolicy) -> list[Pair]:
    return list(iter_tsv(path, policy))


def iter_tsv(path: Path, policy: ErrorPolicy) -> Iterator[Pair]:
    """The pairs of a ``source<TAB>target`` file as they are read."""
    for number, line in read_lines(path, policy):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            policy.bad(path, number, f"expected 'source<TAB>target', found {len(parts) - 1} tabs")
            continue
        src, tgt = parts[0].strip(), parts[1].strip()
        if not src or not tgt:
            policy.bad(path, number, f"empty {'source' if not src else 'target'} side")
            continue
        yield src, tgt


def read_parallel(src_path: Path, tgt_path: Path, policy: ErrorPolicy) -> list[Pair]:
    src = list(read_lines(src_path, policy))
    tgt = list(read_lines(tgt_path, policy))
    if len(src) != len(tgt) and policy.mode == "raise":
        raise DataError(tgt_path, None, f"{len(tgt)} lines, but {src_path.name} has {len(src)}: files must be line-aligned")
    tgt_by_line = dict(tgt)
    pairs = []
    for number, s in src:
        t = tgt_by_line.get(number)
        if t is None:
            policy.bad(tgt_path, number, f"no line aligned with {src_path.name}:{number}")
            continue
        if not s.strip() or not t.strip():
            policy.bad(src_path if not s.strip() else tgt_path, number, "empty line in a parallel file")
            continue
        pairs.append((s.strip(), t.strip()))
    return pairs


def iter_parallel(src_path: Path, tgt_path: Path, policy: ErrorPolicy) -> Iterator[Pair]:
    """:func:`read_parallel`'s pairs as they are read, without holding either file: one pass counts each
    file's lines (its errors -- bad UTF-8, unaligned files -- come first and in the same order), a second
    walks both files together by line number."""
    counts = [sum(1 for _ in read_lines(path, policy)) for path in (src_path, tgt_path)]
    if counts[0] != counts[1] and policy.mode == "raise":
        raise DataError(tgt_path, None, f"{counts[1]} lines, but {src_path.name} has {counts[0]}: files must be "
                                        "line-aligned")
    quiet = ErrorPolicy("skip")  # bad UTF-8 lines were counted by the first pass
    targets = read_lines(tgt_path, quiet, record=False)
    current = next(targets, None)
    for number, s in read_lines(src_path, quiet, record=False):
        while current is not None and current[0] < number:
            current = next(targets, None)
        if current is None or current[0] != number:
            policy.bad(tgt_path, number, f"no line aligned with {src_path.name}:{number}")
            continue
        t = current[1]
        if not s.strip() or not t.strip():
            policy.bad(src_path if not s.strip() else tgt_path, number, "empty line in a parallel file")
            continue
        yield s.strip(), t.strip()


EMBEDDED = {"en-de": "translation", "en-zh": "translation_zh"}  # data.embedded -> folder under data/
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,4})?")  # en, zh_CN, pt-BR (not align, ...)
NOT_LANGUAGES = {"tsv", "txt", "csv", "gz", "bz2", "xz", "zip", "tar", "xml", "sgm", "log", "py", "md"}


def directory_of(path: str, embedded: str = "en-de") -> Path:
    """``data.path``, or the folder of the embedded dataset ``data.embedded``."""
    return data_dir(path, EMBEDDED[str(embedded)])


def languages(directory: Path, src_lang: str, tgt_lang: str) -> tuple[str, str]:
    """``data.src_lang`` / ``data.tgt_lang`` where set; else from the names of the line-aligned files
    (``train.<lang>``): ``en`` is the source when present (``en`` -> ``de`` when both exist, as Multi30k,
    or when only one of them does, as the defaults were), the one other language the target.
    ``("", "")`` for a TSV layout with neither set."""
    if src_lang and tgt_lang:
        return src_lang, tgt_lang
    found = sorted({f.suffix[1:] for name in SPLIT_NAMES["train"] for f in directory.glob(f"{name}.*")
                    if LANGUAGE_CODE.fullmatch(f.suffix[1:]) and f.suffix[1:].lower() not in NOT_LANGUAGES})
    if not found:
        return src_lang, tgt_lang
    if src_lang or tgt_lang:
        rest = [x for x in found if x not in (src_lang, tgt_lang)]
        if len(rest) == 1:
            return src_lang or rest[0], tgt_lang or rest[0]
    if (set(found) <= {"en", "de"} or {"en", "de"} <= set(found)) and not src_lang and not tgt_lang:
        return "en", "de"  # the defaults before languages were read from the names: a missing train.de is named
    if len(found) == 2 and "en" in found:
        return "en", next(x for x in found if x != "en")
    if set(found) <= {"en", "de"}:
        return src_lang or "en", tgt_lang or "de"
    raise DataError(directory, None, f"line-aligned files in languages {', '.join(found)}: set data.src_lang= and "
                                     "data.tgt_lang=")


def target_language(path: str, embedded: str, src_lang: str, tgt_lang: str, reverse: bool,
                    targets: list[str]) -> tuple[str, str]:
    """The target language (``data.src_lang`` side when ``reverse``) and how it was known: the keys or the
    line-aligned file names (:func:`languages`), the embedded dataset, else the script of ``targets``
    (``zh``/``ja``/``ko``, or ``""`` where the script names no language)."""
    if path:
        src, tgt = languages(Path(path), src_lang, tgt_lang)
        how = "data.src_lang/data.tgt_lang or the file names"
    else:
        src, tgt = str(embedded).split("-")
        how = f"data.embedded={embedded}"
    lang = src if reverse else tgt
    if not lang:
        lang = scripts.profile(targets).language()
        how = "the target text's script" + ("" if lang else " (no language-specific tokenizer applies)")
    return lang, how


def split_files(path: str, src_lang: str, tgt_lang: str, embedded: str = "en-de"
                ) -> tuple[Path, dict[str, tuple[Path, ...]]]:
    """``(directory, {split: files})``: the files :func:`load_pairs` reads for each split found -- one
    ``.tsv``, or a line-aligned ``.<src_lang>`` + ``.<tgt_lang>`` pair -- without reading them (what the
    prepared store's key hashes). A missing train or test split is the same error as loading it."""
    directory = directory_of(path, embedded)
    if not directory.is_dir():
        raise DataError(directory, None, "data.path is not a directory")
    src_lang, tgt_lang = languages(directory, src_lang, tgt_lang)
    found: dict[str, tuple[Path, ...]] = {}
    for split, names in SPLIT_NAMES.items():
        tsv = find_split(directory, names, ".tsv")
        src = find_split(directory, names, f".{src_lang}") if src_lang else None
        if tsv is not None:
            found[split] = (tsv,)
        elif src is not None:
            tgt = src.with_suffix(f".{tgt_lang}")
            if not tgt.is_file():
                raise DataError(tgt, None, f"missing: {src.name} has no aligned .{tgt_lang} file")
            found[split] = (src, tgt)
    if "train" not in found:
        raise DataError(directory, None, f"no train.tsv or train.{src_lang or '<src_lang>'}/train."
                                         f"{tgt_lang or '<tgt_lang>'} found")
    if "test" not in found:
        raise DataError(directory, None, f"no test split (test.tsv or test.{src_lang or '<src_lang>'}/test."
                                         f"{tgt_lang or '<tgt_lang>'})")
    return directory, found


def load_pairs(path: str, src_lang: str, tgt_lang: str, on_error: str = "raise", seed: int = 0,
               reverse: bool = False, embedded: str = "en-de") -> tuple[dict[str, list[Pair]], ErrorPolicy]:
    """``({"train", "valid", "test"}: [(source, target)]), policy`` with the skip counts."""
    directory, found = split_files(path, src_lang, tgt_lang, embedded)
    policy = ErrorPolicy(on_error)
    splits = {split: read_tsv(files[0], policy) if len(files) == 1 else read_parallel(*files, policy)
              for split, files in found.items()}
    if "valid" not in splits:
        splits["train"], splits["valid"] = carve(splits["train"], 0.05, seed)
    for split, pairs in splits.items():
        if not pairs:
            raise DataError(directory, None, f"the {split} split has no usable pairs")
    if reverse:
        splits = {k: [(t, s) for s, t in v] for k, v in splits.items()}
    return splits, policy


def stream_pairs(path: str, src_lang: str, tgt_lang: str, on_error: str = "raise", seed: int = 0,
                 reverse: bool = False, embedded: str = "en-de") -> tuple[Path, dict, ErrorPolicy]:
    """:func:`load_pairs` as streams: ``(directory, {"train", "valid", "test"}: () -> iterator of pairs,
    policy)``, the same pairs in the same order, read when iterated (once each: the policy counts what is
    skipped). Without a valid split, :func:`carve_indices` picks the training pairs that become it -- one
    extra pass counts the training pairs (its errors are the ones :func:`load_pairs` would raise)."""
    directory, found = split_files(path, src_lang, tgt_lang, embedded)
    policy = ErrorPolicy(on_error)

    def read(split, pol):
        files = found[split]
        pairs = iter_tsv(files[0], pol) if len(files) == 1 else iter_parallel(*files, pol)
        return ((t, s) for s, t in pairs) if reverse else pairs

    streams = {split: (lambda split=split: read(split, policy)) for split in found}
    if "valid" not in found:
        carved = carve_indices(sum(1 for _ in read("train", ErrorPolicy(on_error))), 0.05, seed)
        streams["train"] = lambda: (p for i, p in enumerate(read("train", policy)) if i not in carved)
        streams["valid"] = lambda: (p for i, p in enumerate(read("train", ErrorPolicy("skip"))) if i in carved)
    return directory, {split: streams[split] for split in ("train", "valid", "test")}, policy


def test_languages(directory: Path, src_lang: str, tgt_lang: str) -> tuple[str, str]:
    """The languages of a test-only folder's line-aligned files: ``data.src_lang``/``data.tgt_lang``, else
    two ``test.<lang>`` files one of which is ``en`` (the source)."""
    if src_lang and tgt_lang:
        return src_lang, tgt_lang
    found = sorted({f.suffix[1:] for name in SPLIT_NAMES["test"] for f in directory.glob(f"{name}.*")
                    if LANGUAGE_CODE.fullmatch(f.suffix[1:]) and f.suffix[1:].lower() not in NOT_LANGUAGES})
    if len(found) == 2 and "en" in found:
        return "en", next(x for x in found if x != "en")
    raise DataError(directory, None, "data.extra_test: no test.tsv, and the test.<lang> files do not say which is "
                                     "the source: set data.src_lang= and data.tgt_lang=")


def load_extra_tests(spec: str, src_lang: str, tgt_lang: str, policy: ErrorPolicy,
                     reverse: bool = False) -> dict[str, list[Pair]]:
    """``data.extra_test=DIR[,DIR...]``: more test sets, scored with the trained model (``test.<name>.*``).
    Each entry is a folder with a test split (``test.tsv`` or ``test.<src>``/``test.<tgt>``; named by
    the folder) or a ``.tsv`` file (named by its stem, or its folder's name when the stem is ``test``).
    Names keep letters, digits, ``_`` and ``-``; two entries with one name are an error."""
    out: dict[str, list[Pair]] = {}
    for entry in [e.strip() for e in spec.split(",") if e.strip()]:
        path = Path(entry).expanduser()
        if path.is_file():
            name = path.parent.name if path.stem in SPLIT_NAMES["test"] else path.stem
            pairs = read_tsv(path, policy)
        elif path.is_dir():
            name = path.name
            tsv = find_split(path, SPLIT_NAMES["test"], ".tsv")
            if tsv is not None:
                pairs = read_tsv(tsv, policy)
            else:
                src_l, tgt_l = test_languages(path, src_lang, tgt_lang)
                src = find_split(path, SPLIT_NAMES["test"], f".{src_l}")
                if src is None or not src.with_suffix(f".{tgt_l}").is_file():
                    raise DataError(path, None, f"data.extra_test: no test.tsv or test.{src_l}/test.{tgt_l} in this folder")
                pairs = read_parallel(src, src.with_suffix(f".{tgt_l}"), policy)
        else:
            raise DataError(path, None, "data.extra_test: no such file or folder")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "extra"
        if name in out:
            raise DataError(path, None, f"data.extra_test: a second test set named {name!r} (rename a folder)")
        if not pairs:
            raise DataError(path, None, "data.extra_test: no usable pairs")
        out[name] = [(t, s) for s, t in pairs] if reverse else pairs
    return out
