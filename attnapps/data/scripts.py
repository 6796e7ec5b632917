"""Writing systems: which Unicode script a character belongs to, which scripts are written without spaces
between words or right to left, Unicode normalisation, and a word splitter that works for all of them.

* :func:`profile` counts the letters of a text sample by script (``ScriptProfile``): the share written
  without spaces (Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan), the share written right to left
  (Arabic, Hebrew, Syriac, Thaana, N'Ko) and a guess of the language for scripts that name it
  (``zh``/``ja``/``ko``).
* :func:`normalize` -- NFC, and full-width Latin letters and digits and half-width kana become the ordinary
  ones (full-width punctuation and "…" stay as written); zero-width spaces become spaces, byte-order marks
  and soft hyphens go; zero-width (non-)joiners stay.
* :func:`split_words` -- words by a Unicode regex, as BERT's basic tokenizer does for CJK (Devlin et al.
  2019): every character of a script written without spaces is a token of its own; combining marks
  (Arabic harakat, Indic vowel signs, accents) and zero-width (non-)joiners stay inside their word.
  On text without such characters it splits exactly as ``\\w+(?:'\\w+)?|[^\\w\\s]``.

The script table covers the scripts by block ranges (Unicode 15); characters outside it are ``Common``.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

# (first, last, script), sorted by first code point
_RANGES = sorted([
    (0x0041, 0x005A, "Latin"), (0x0061, 0x007A, "Latin"), (0x00C0, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"), (0x0400, 0x052F, "Cyrillic"),
    (0x0530, 0x058F, "Armenian"), (0x0590, 0x05FF, "Hebrew"), (0xFB1D, 0xFB4F, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0x08A0, 0x08FF, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFE, "Arabic"), (0x0700, 0x074F, "Syriac"), (0x0780, 0x07BF, "Thaana"),
    (0x07C0, 0x07FF, "Nko"), (0x0900, 0x097F, "Devanagari"), (0x0980, 0x09FF, "Bengali"),
    (0x0A00, 0x0A7F, "Gurmukhi"), (0x0A80, 0x0AFF, "Gujarati"), (0x0B00, 0x0B7F, "Oriya"),
    (0x0B80, 0x0BFF, "Tamil"), (0x0C00, 0x0C7F, "Telugu"), (0x0C80, 0x0CFF, "Kannada"),
    (0x0D00, 0x0D7F, "Malayalam"), (0x0D80, 0x0DFF, "Sinhala"), (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Lao"),
    (0x0F00, 0x0FFF, "Tibetan"), (0x1000, 0x109F, "Myanmar"), (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul"), (0x3130, 0x318F, "Hangul"), (0xA960, 0xA97F, "Hangul"), (0xAC00, 0xD7FF, "Hangul"),
    (0xFFA0, 0xFFDC, "Hangul"), (0x1200, 0x139F, "Ethiopic"), (0x1780, 0x17FF, "Khmer"), (0x19E0, 0x19FF, "Khmer"),
    (0x3040, 0x309F, "Hiragana"), (0x30A0, 0x30FF, "Katakana"), (0x31F0, 0x31FF, "Katakana"),
    (0xFF66, 0xFF9F, "Katakana"), (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"),
    (0x20000, 0x323AF, "Han"), (0x3005, 0x3007, "Han"), (0xFF21, 0xFF3A, "Latin"), (0xFF41, 0xFF5A, "Latin"),
])
_STARTS = [r[0] for r in _RANGES]

UNSPACED = frozenset({"Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar", "Tibetan"})
RTL = frozenset({"Arabic", "Hebrew", "Syriac", "Thaana", "Nko"})
EAST_ASIAN = frozenset({"Han", "Hiragana", "Katakana", "Hangul"})


def script(ch: str) -> str:
    """The script of one character (``Common`` for digits, punctuation, symbols and unlisted blocks)."""
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and _RANGES[i][0] <= cp <= _RANGES[i][1]:
        return _RANGES[i][2]
    return "Common"


def _class(scripts: Iterable[str]) -> str:
    """A regex character class body of the ranges of ``scripts``."""
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b, s in _RANGES if s in scripts)


_UNSPACED_CLASS = _class(UNSPACED)
_EAST_ASIAN = re.compile(f"[{_class(EAST_ASIAN)}\u3000-\u303f\uff00-\uffef]")
_INVISIBLE = str.maketrans({"\u200b": " ", "\ufeff": None, "\u00ad": None, "\u2060": None})
# ``auto``: full-width Latin letters and digits become ASCII, half-width katakana and hangul the ordinary ones,
# the ideographic space a space -- and nothing else, so full-width punctuation (，：（）) and "…" stay as written
_WIDTH = {**{c: chr(c - 0xFEE0) for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for c in range(r[0], r[1] + 1)},
          **{c: unicodedata.normalize("NFKC", chr(c)) for c in range(0xFF65, 0xFFDD)}, 0x3000: " "}


@lru_cache(maxsize=1)
def _marks() -> str:
    """A regex class body of every combining mark (categories Mn, Mc, Me) and the zero-width (non-)joiners."""
    spans, start, prev = [], None, None
    for cp in list(range(0x20000)) + list(range(0xE0100, 0xE01F0)):
        if unicodedata.category(chr(cp))[0] == "M":
            if start is None or cp != prev + 1:
                if start is not None:
                    spans.append((start, prev))
                start = cp
            prev = cp
    spans.append((start, prev))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in spans) + "\u200c\u200d"


@lru_cache(maxsize=1)
def _patterns():
    marks = _marks()
    unspaced = re.compile(f"([{_UNSPACED_CLASS}][{marks}]*)")
    words = re.compile(f"(?:\\w|[{marks}])+(?:'(?:\\w|[{marks}])+)?|[^\\w\\s][{marks}]*")
    letters = re.compile(f"(?:[^\\W_]|[{marks}])+(?:'(?:[^\\W_]|[{marks}])+)?")
    return unspaced, words, letters


def normalize(text: str, form: str = "auto") -> str:
    """``form``: ``auto`` (NFC, then full-width Latin letters and digits to ASCII and half-width kana and
    hangul to the ordinary ones -- what NFKC does to them -- while full-width punctuation such as ``，：（）``
    and compatibility characters such as ``…`` and ``½`` stay as written: they carry style, and folding
    them cost 1.5 points of valid accuracy on the Chinese development set, README), ``nfkc``, ``nfc`` or
    ``none`` (unchanged). Zero-width spaces -> spaces; BOMs, soft hyphens and word joiners removed;
    zero-width (non-)joiners kept (they change how Persian and Indic words are shaped). ``auto_v1`` is
    what ``auto`` did before (NFKC for text with East Asian characters, else NFC), kept for the
    tokenizers saved with it."""
    if form == "none":
        return text
    if form == "auto_v1":
        form = "nfkc" if _EAST_ASIAN.search(text) else "nfc"
    if form == "auto":
        text = unicodedata.normalize("NFC", text)
        return (text.translate(_WIDTH) if _EAST_ASIAN.search(text) else text).translate(_INVISIBLE)
    return unicodedata.normalize(form.upper(), text).translate(_INVISIBLE)


def split_words(text: str, punctuation: bool = True) -> list[str]:
    """Words of any script (see the module docstring). ``punctuation=False``: runs of letters and digits
    only, as the COCO caption evaluation's tokenizer keeps.

    >>> split_words("我爱北京天安门。"), split_words("Hello, world!"), split_words("مرحبا بالعالم")
    (['我', '爱', '北', '京', '天', '安', '门', '。'], ['Hello', ',', 'world', '!'], ['مرحبا', 'بالعالم'])
    """
    unspaced, words, letters = _patterns()
    spaced = unspaced.sub(r" \1 ", text)  # each character of an unspaced script stands alone
    return (words if punctuation else letters).findall(spaced)


def join_words(tokens: list[str]) -> str:
    """Tokens back to text: a space between two tokens unless either is of a script written without
    spaces, and none before closing punctuation.

    >>> join_words(['我', '爱', '北', '京', '。']), join_words(['Hello', ',', 'world', '!'])
    ('我爱北京。', 'Hello, world!')
    """
    out = []
    for tok in tokens:
        if out and not (script(tok[0]) in UNSPACED or script(out[-1][-1]) in UNSPACED or tok[0] in ".,!?;:)]}'"):
            out.append(" ")
        out.append(tok)
    return "".join(out)


@dataclass
class ScriptProfile:
    """Letters of a text sample counted by script."""

    letters: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.letters.values())

    def share(self, scripts) -> float:
        return sum(self.letters[s] for s in scripts) / max(self.total, 1)

    @property
    def unspaced(self) -> float:
        """Share of letters from scripts written without spaces between words."""
        return self.share(UNSPACED)

    @property
    def rtl(self) -> float:
        return self.share(RTL)

    def top(self, n: int = 3) -> str:
        """e.g. ``Han 81%, Latin 12%, Hiragana 4%``."""
        return ", ".join(f"{s} {c / max(self.total, 1):.0%}" for s, c in self.letters.most_common(n)) or "no letters"

    def language(self) -> str:
        """``ja`` when kana make up 5% or more of the East Asian letters, else ``zh`` when Han is the main
        script, ``ko`` when Hangul is; ``""`` when the script does not name the language."""
        east = self.share(EAST_ASIAN)
        if east < 0.5:
            return ""
        kana = self.share({"Hiragana", "Katakana"})
        if kana >= 0.05 * east:
            return "ja"
        if self.letters["Hangul"] > self.letters["Han"]:
            return "ko"
        return "zh"


def profile(texts: Iterable[str], max_chars: int = 2_000_000) -> ScriptProfile:
    """Count the letters (and marks) of ``texts`` by script, reading at most ``max_chars`` characters."""
    counts: Counter = Counter()
    read = 0
    for text in texts:
        counts.update(script(ch) for ch in text if ch.isalpha())
        read += len(text)
        if read >= max_chars:
            break
    counts.pop("Common", None)
    return ScriptProfile(counts)
