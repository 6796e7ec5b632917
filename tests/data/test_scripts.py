"""Writing systems: script detection, normalisation, and word splitting for scripts with and without spaces."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from attnapps.data import WordTokenizer, fit_tokenizer, tokenizer_from_state
from attnapps.data.scripts import join_words, normalize, profile, script, split_words

OLD_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # the word tokenizer before scripts without spaces were handled
OLD_CAPTION = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


@pytest.mark.parametrize("ch, name", [("a", "Latin"), ("é", "Latin"), ("中", "Han"), ("の", "Hiragana"),
                                      ("テ", "Katakana"), ("한", "Hangul"), ("ก", "Thai"), ("ب", "Arabic"),
                                      ("ש", "Hebrew"), ("д", "Cyrillic"), ("न", "Devanagari"), ("7", "Common"),
                                      ("，", "Common"), ("𠀀", "Han")])
def test_script_of_known_characters(ch, name):
    assert script(ch) == name


def test_chinese_and_japanese_characters_are_single_tokens():
    assert split_words("我爱北京天安门。") == ["我", "爱", "北", "京", "天", "安", "门", "。"]
    assert split_words("日本語のテキストです") == ["日", "本", "語", "の", "テ", "キ", "ス", "ト", "で", "す"]
    # Latin words and numbers inside CJK text stay whole
    assert split_words("我用Python写了3个程序") == ["我", "用", "Python", "写", "了", "3", "个", "程", "序"]
    # Hangul is written with spaces between words: words stay whole
    assert split_words("안녕하세요 세계") == ["안녕하세요", "세계"]


def test_combining_marks_and_joiners_stay_with_their_letters():
    # Arabic with harakat: two words, not letters and marks apart
    assert split_words("مَرْحَبًا بِالْعَالَم") == ["مَرْحَبًا", "بِالْعَالَم"]
    # Hebrew with niqqud
    assert split_words("שָׁלוֹם עוֹלָם") == ["שָׁלוֹם", "עוֹלָם"]
    # Devanagari vowel signs and virama (categories Mc, Mn) are not \w: the old regex cut the words apart
    assert split_words("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert OLD_WORD.findall("नमस्ते") != ["नमस्ते"]
    # Persian zero-width non-joiner inside a word
    assert split_words("می\u200cخواهم") == ["می\u200cخواهم"]
    # Thai: one token per character, each with its tone mark or vowel sign
    assert split_words("ง่าย") == ["ง่", "า", "ย"]
    # a decomposed accent stays on its letter
    assert split_words("cafe\u0301 noir") == ["cafe\u0301", "noir"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF, blacklist_categories=("Mn", "Mc", "Me", "Cs"))))
def test_text_without_marks_or_unspaced_scripts_splits_as_before(text):
    assert split_words(text) == OLD_WORD.findall(text)
    assert split_words(text, punctuation=False) == OLD_CAPTION.findall(text)


def test_normalisation():
    # full-width Latin letters and digits in CJK text become ASCII; full-width punctuation stays (NFKC would fold it)
    assert normalize("ＡＢＣ１２３，我们：（好）…") == "ABC123，我们：（好）…"
    assert normalize("ＡＢＣ１２３，我们：（好）…", "nfkc") == "ABC123,我们:(好)..."
    # half-width katakana become full-width, the ideographic space a space
    assert normalize("ｶﾀｶﾅ\u3000ﾃｽﾄ") == "カタカナ テスト"
    # the rule before (saved as plain "auto" in older checkpoints) folded the punctuation too
    assert normalize("ＡＢＣ，我们", "auto_v1") == "ABC,我们"
    # English text keeps its compatibility characters (NFC): "…" stays one character
    assert normalize("Wait… ½") == "Wait… ½"
    assert normalize("Wait…", "nfkc") == "Wait..."
    assert normalize("Ｘ", "none") == "Ｘ"
    # NFC composes a decomposed accent
    assert normalize("cafe\u0301") == "café"
    # zero-width space -> space, BOM and soft hyphen removed, ZWJ / ZWNJ kept
    assert normalize("\ufeffa\u200bb co\u00adop می\u200cخواهم 👩\u200d💻") == "a b coop می\u200cخواهم 👩\u200d💻"


def test_join_words_inverts_split_for_cjk_and_english():
    for text in ["我爱北京天安门。", "Hello, world!", "我用Python写了程序。"]:
        assert join_words(split_words(text)) == text


def test_profile_guesses_language_from_script():
    assert profile(["我爱北京天安门", "今天天气很好"]).language() == "zh"
    assert profile(["日本語のテキストです", "東京へ行きます"]).language() == "ja"
    assert profile(["안녕하세요 세계"]).language() == "ko"
    assert profile(["Hello world", "Привет мир"]).language() == ""
    p = profile(["مرحبا بالعالم", "hello"])
    assert p.rtl == pytest.approx(12 / 17) and p.unspaced == 0
    assert profile(["我爱 Python"]).unspaced == pytest.approx(2 / 8)


def test_word_tokenizer_normalises_and_round_trips_its_state():
    tok = WordTokenizer().fit(["ＡＢＣ我们", "abc我们"])
    assert tok.split("ＡＢＣ我们") == tok.split("abc我们") == ["abc", "我", "们"]
    again = tokenizer_from_state(tok.state_dict())
    assert again.normalize == "auto" and again.encode("ＡＢＣ我们") == tok.encode("abc我们")
    # a checkpoint written before normalisation existed keeps splitting the text as it came
    old = {k: v for k, v in tok.state_dict().items() if k != "normalize"}
    assert tokenizer_from_state(old).split("ＡＢＣ") == ["ａｂｃ"]
    # ... and one saved with the earlier "auto" (no normalize_rule) keeps folding full-width punctuation
    v1 = {k: v for k, v in tok.state_dict().items() if k != "normalize_rule"}
    assert tokenizer_from_state(v1).split("我们，") == ["我", "们", ","]
    assert again.split("我们，") == ["我", "们", "，"]
    assert fit_tokenizer("word", ["Ｘ"], normalize="none").split("Ｘ") == ["ｘ"]
