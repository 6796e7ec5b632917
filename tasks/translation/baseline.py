"""The classic baseline beside every translation run: word by word with IBM Model 1 (Brown et al. 1993),
fitted on the run's training pairs and tuned on its valid split like any setting.

Each source word (:func:`attnapps.data.scripts.split_words`) becomes its most probable target word under
IBM Model 1, in source order; an unknown word is copied (names, numbers); optionally a word whose best
target is more probable from NULL than from the word itself is dropped (articles, particles). The
EM iterations (1, 2, 3, 5, 10) and the dropping (on, off) are chosen by the task's primary metric on
valid; the test split is scored once with that choice. Targets written without spaces (Chinese,
Japanese) are cut into the run's target subword pieces instead of single characters.
"""

from __future__ import annotations

import re

import torch

from attnapps.data import scripts
from attnapps.metrics import sacrebleu_scores

from .lexicon import ibm1_tables, index_words, top_entries

ITERATIONS = (1, 2, 3, 5, 10)


def word_by_word(train: list[tuple[str, str]], splits: dict[str, list[tuple[str, str]]], target_words,
                 tokenize: str, metric: str = "bleu") -> dict:
    """``{"iterations", "drop_null", "valid": scores, "test": scores, "candidates": {(it, drop): valid
    metric}, "translate": text -> text with the choice, "translate_with": (text, iterations, drop_null) ->
    text, "table": the choice as source word -> target word ("" = dropped)}``; ``target_words(text) -> words``; ``splits`` has ``valid`` and ``test`` pairs."""
    encoded, src_ids, tgt_ids = index_words(train, scripts.split_words, target_words)  # 0 = NULL
    tgt_words = ["<null>", *tgt_ids]
    n_src, n_tgt = len(src_ids) + 1, len(tgt_ids) + 1
    tables = {}
    for it, (keys, t) in enumerate(ibm1_tables(encoded, n_src, n_tgt, max(ITERATIONS)), 1):
        if it in ITERATIONS:
            best, p_best = top_entries(keys, t, n_src, n_tgt, 1)  # (n_src, 1) each
            t_null = torch.zeros(n_tgt, dtype=t.dtype)  # t(f | NULL): NULL is source id 0, keys 0..n_tgt-1
            is_null = keys < n_tgt
            t_null[keys[is_null]] = t[is_null]
            drop = (p_best[:, 0] < t_null[best[:, 0]]).tolist()  # its best target is likelier from NULL
            tables[it] = [(tgt_words[b], d) for b, d in zip(best[:, 0].tolist(), drop)]

    chosen: dict[tuple[int, bool], dict[str, str]] = {}

    def table_of(it: int, drop_null: bool) -> dict[str, str]:  # source word -> target word, "" = dropped
        if (it, drop_null) not in chosen:
            chosen[it, drop_null] = {w: "" if drop_null and tables[it][i][1] else tables[it][i][0]
                                     for w, i in src_ids.items()}
        return chosen[it, drop_null]

    def translate(text: str, it: int, drop_null: bool) -> str:
        return translate_with_table(table_of(it, drop_null), text)

    def score(split: str, it: int, drop_null: bool) -> dict:
        pairs = splits[split]
        return sacrebleu_scores([translate(s, it, drop_null) for s, _ in pairs], [g for _, g in pairs], tokenize)

    candidates = {(it, drop): score("valid", it, drop)[metric] for it in ITERATIONS for drop in (True, False)}
    it, drop = max(candidates, key=lambda c: (candidates[c], -c[0], c[1]))  # ties: fewer iterations, dropping
    return {"iterations": it, "drop_null": drop, "valid": score("valid", it, drop), "test": score("test", it, drop),
            "candidates": candidates, "translate": lambda text: translate(text, it, drop), "translate_with": translate,
            "table": table_of(it, drop)}


def translate_with_table(table: dict[str, str], text: str, protect: bool = False) -> str:
    """The word-by-word translation from a ``table`` (source word -> target word, "" = dropped; a word
    outside it -- unknown -- is copied): the baseline's translation, also without the fitted model.
    ``protect``: a space-separated token that looks like code (:func:`protected`) is copied whole instead
    of translated piece by piece (``%(name)s`` stays itself, not ``% ( Name) ist``)."""
    def words(chunk: str) -> list[str]:  # each word's translation, an unknown word itself, dropped ones left out
        return [w if t is None else t for w, t in ((w, table.get(w)) for w in scripts.split_words(chunk)) if t != ""]

    if not protect:
        return scripts.join_words(words(text))
    return scripts.join_words([out for token in text.split() for out in ([token] if protected(token) else words(token))])


# what is not a word of a language but a string to keep: a placeholder or markup (% { } < > _ = / \ @ [ ] | $ # ~),
# a number or anything with a digit, a command-line option (-x, --all), an identifier (camelCase, ALLCAPS)
_CODE = re.compile(r"[%{}<>_=/\\@\[\]|$#~0-9]|^-\S|[a-z][A-Z]|^[A-Z]{2,}$")
_EDGES = "\"'\u201c\u201d\u201e\u2018\u2019\u00ab\u00bb(),.;:!?"


def protected(token: str) -> bool:
    """Whether a space-separated ``token`` is kept verbatim by ``translate_with_table(protect=True)``: it
    looks like code (:data:`_CODE`) once the quotes and punctuation around it are set aside, and has no
    letter of a script written without spaces (there a space-separated token can be a whole clause)."""
    core = token.strip(_EDGES)
    return bool(core) and _CODE.search(core) is not None and not any(
        scripts.script(ch) in scripts.UNSPACED for ch in core)
