"""BLEU and chrF.

* :func:`sacrebleu_scores`: detokenized corpus BLEU and chrF with sacreBLEU (Post 2018), the
  comparable numbers for translation, with sacreBLEU's signature strings.
* :func:`corpus_bleu_nltk`: BLEU-1..4 on pre-tokenized text with many references (captioning's
  convention, as in the COCO caption evaluation), via ``nltk.translate.bleu_score.corpus_bleu``.
"""

from __future__ import annotations

import warnings
from typing import Sequence


# sacreBLEU's own choice when the target language is given (``sacrebleu -l src-tgt``): BLEU.__init__
BLEU_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
EXTRAS = {"ja-mecab": "ja", "ko-mecab": "ko"}  # attnapps extras that install what those tokenizers import


def bleu_tokenizer(lang: str, tokenize: str = "auto") -> str:
    """The sacreBLEU tokenizer for target language ``lang`` (``zh``, ``zh_CN``, ``ja-JP``, ... or ``""``):
    ``tokenize`` when set, else what ``sacrebleu -l xx-<lang>`` uses (``zh``, ``ja-mecab``, ``ko-mecab``,
    otherwise ``13a``)."""
    if tokenize and tokenize != "auto":
        return tokenize
    return BLEU_TOKENIZERS.get(primary_language(lang), "13a")


def primary_language(code: str) -> str:
    """``zh_CN`` / ``zh-Hans`` / ``ZH`` -> ``zh``."""
    return code.replace("-", "_").split("_")[0].lower()


def check_bleu_tokenizer(name: str) -> str | None:
    """None if sacreBLEU's tokenizer ``name`` can be built here, else the reason with the install command."""
    from sacrebleu.metrics.bleu import _get_tokenizer

    try:
        _get_tokenizer(name)()
    except (ImportError, RuntimeError) as e:
        extra = EXTRAS.get(name)
        hint = f'pip install "attnapps[{extra}]"' if extra else "see sacreBLEU's documentation"
        return f"sacreBLEU's {name} tokenizer cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:120]}); {hint}"
    return None


def sacrebleu_scores(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                     tokenize: str = "13a") -> dict:
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature"}`` for one or several reference streams.

    ``references``: one string per hypothesis, or a list of reference streams (each one string per
    hypothesis), as sacrebleu takes them. ``tokenize``: sacreBLEU's BLEU tokenizer (:func:`bleu_tokenizer`
    picks it from the target language).
    """
    from sacrebleu.metrics import BLEU, CHRF

    refs = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    b = bleu.corpus_score(list(hypotheses), refs)
    c = chrf.corpus_score(list(hypotheses), refs)
    return {"bleu": b.score, "chrf": c.score, "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


def corpus_bleu_nltk(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
                     max_n: int = 4, smoothing: int | None = None) -> dict[str, float]:
    """BLEU-1..max_n in [0, 1] with uniform weights; ``smoothing`` = nltk ``SmoothingFunction`` method
    number (None = no smoothing, as the COCO evaluation)."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    smooth = getattr(SmoothingFunction(), f"method{smoothing}") if smoothing is not None else None
    refs = [[list(r) for r in rs] for rs in references]
    hyps = [list(h) for h in hypotheses]
    out = {}
    with warnings.catch_warnings():  # nltk warns on every order without a match; the score says it
        warnings.simplefilter("ignore", UserWarning)
        for n in range(1, max_n + 1):
            out[f"bleu{n}"] = float(corpus_bleu(refs, hyps, weights=tuple([1.0 / n] * n), smoothing_function=smooth))
    return out
