"""Languages written without spaces: Chinese classification learns from characters, BLEU of Chinese and
Japanese targets equals the sacrebleu command line's (which picks its tokenizer by target language), the
target language comes from the keys, the file names or the script, and the embedded Chinese sets load."""

import json
import random
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from attnapps.errors import DataError
from attnapps.metrics import bleu_tokenizer, sacrebleu_scores
from attnapps.run import train as run_training
from attnapps_tasks.classification.baseline import features, tfidf_logreg
from attnapps_tasks.classification.data import load_examples
from attnapps_tasks.classification.task import ClassificationConfig, ClassificationTask
from attnapps_tasks.translation.data import languages, load_pairs
from attnapps_tasks.translation.task import TranslationConfig, TranslationTask
from tests.conftest import run_cli

ZH_HYPS = ["猫坐在垫子上。", "今天天气很好", "我们明天去北京吧", "这是一个测试"]
ZH_REFS = ["猫坐在垫子上。", "今天的天气很好", "我们明天去上海吧", "这是测试"]
JA_HYPS = ["猫がマットの上に座った。", "今日はいい天気です", "明日東京へ行きましょう"]
JA_REFS = ["猫はマットの上に座った。", "今日は良い天気です", "明日は東京へ行きましょう"]


def cli_bleu(tmp_path, hyps, refs, pair):
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
                          "-l", pair, "-m", "bleu", "-b", "-w", "6"], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.parametrize("lang, hyps, refs", [("zh", ZH_HYPS, ZH_REFS), ("ja", JA_HYPS, JA_REFS)])
def test_bleu_by_target_language_equals_the_sacrebleu_cli(tmp_path, lang, hyps, refs):
    ours = sacrebleu_scores(hyps, refs, bleu_tokenizer(lang))
    assert ours["bleu"] == pytest.approx(cli_bleu(tmp_path, hyps, refs, f"en-{lang}"), abs=1e-4)
    assert f"tok:{bleu_tokenizer(lang)}" in ours["bleu_signature"]
    # 13a sees each unspaced clause as one word: a different (and meaningless) number
    assert sacrebleu_scores(hyps, refs, "13a")["bleu"] != pytest.approx(ours["bleu"], abs=1)


def test_bleu_tokenizer_follows_sacrebleu_choice_and_an_explicit_setting():
    assert [bleu_tokenizer(x) for x in ("zh", "zh_CN", "zh-Hant", "ja", "ja_JP", "ko", "de", "ar", "")] == \
        ["zh", "zh", "zh", "ja-mecab", "ja-mecab", "ko-mecab", "13a", "13a", "13a"]
    assert bleu_tokenizer("zh", "char") == "char" and bleu_tokenizer("de", "auto") == "13a"


def test_languages_from_keys_and_file_names(tmp_path):
    assert languages(tmp_path, "fr", "en") == ("fr", "en")
    assert languages(tmp_path, "", "") == ("", "")  # a TSV layout: the target's script decides later
    for name in ("train.en", "train.ja", "test.en", "test.ja", "test.align", "train.tsv.gz"):
        (tmp_path / name).write_text("x\n")
    assert languages(tmp_path, "", "") == ("en", "ja")
    assert languages(tmp_path, "ja", "") == ("ja", "en")
    for name in ("train.de", "train.fr"):
        (tmp_path / name).write_text("x\n")
    assert languages(tmp_path, "", "") == ("en", "de")  # Multi30k's names (en, de, fr, cs): the old default
    for name in ("train.en", "test.en", "train.de"):
        (tmp_path / name).unlink()
    with pytest.raises(DataError, match="languages fr, ja: set data.src_lang= and data.tgt_lang="):
        languages(tmp_path, "", "")


NUMBERS = {"zh": "零一二三四五六七八九", "ja": ["ぜろ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう"]}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def number_pairs(lang, n, rng):
    out = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(WORDS[d] for d in digits), "".join(NUMBERS[lang][d] for d in digits) + "。"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("lang, layout", [("zh", "tsv"), ("ja", "parallel")])
def test_translation_run_scores_chinese_and_japanese_as_the_cli(tmp_path, lang, layout):
    """English number words -> Chinese numerals (TSV: the language comes from the script) or Japanese kana
    (train.en/train.ja: from the file names); the run's test BLEU equals `sacrebleu -l en-xx` on its files."""
    rng = random.Random(0)
    data = tmp_path / "data"
    data.mkdir()
    splits = {"train": number_pairs(lang, 600, rng), "valid": number_pairs(lang, 30, rng),
              "test": number_pairs(lang, 40, rng)}
    for split, pairs in splits.items():
        if layout == "tsv":
            (data / f"{split}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
        else:
            (data / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in pairs), encoding="utf-8")
            (data / f"{split}.{lang}").write_text("".join(f"{t}\n" for _, t in pairs), encoding="utf-8")
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist([
        f"data.path={data}", "tokenizer.vocab_size=40", "model.embed_size=32", "model.hidden_size=64",
        "model.dropout=0", "trainer.max_minutes=0", "trainer.max_epochs=0", "trainer.max_steps=150",
        "trainer.eval_every=150", "trainer.batch_size=32", "trainer.lr=5e-3", "trainer.warmup_steps=20",
        "trainer.progress=false", "decode.beam=2", "diag.examples=0", "explorer.examples=0"]))
    metrics = run_training(cfg, tmp_path / "run", TranslationTask)
    hyps = (tmp_path / "run" / "test_hypotheses.txt").read_text(encoding="utf-8").splitlines()
    assert metrics["test.bleu"] == pytest.approx(cli_bleu(tmp_path, hyps, [t for _, t in splits["test"]], f"en-{lang}"),
                                                 abs=1e-4)
    assert metrics["test.bleu"] > 10  # it learned something, so the comparison is not of empty output
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    how = "the target text's script" if layout == "tsv" else "data.src_lang/data.tgt_lang or the file names"
    assert f"target language {lang} (from {how}); BLEU tokenizer {bleu_tokenizer(lang)}" in report
    assert f"tok:{bleu_tokenizer(lang)}" in report


def clause(rng, pool, k):
    return "".join(rng.choice(pool) for _ in range(k))


def chinese_sentiment(directory, rng):
    """Unspaced clauses of random filler characters with one cue character that decides the label: every
    clause is new, so a tokenizer that keeps whole clauses as words sees only unknown words in the test."""
    filler = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
    cues = {"好": "pos", "坏": "neg"}
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        lines = []
        for _ in range(n):
            cue = rng.choice(list(cues))
            text = clause(rng, filler, rng.randint(3, 8)) + cue + clause(rng, filler, rng.randint(3, 8)) + "。"
            lines.append(f"{text}\t{cues[cue]}\n")
        (directory / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")


def test_chinese_classification_learns_from_characters(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    chinese_sentiment(data, random.Random(0))
    overrides = [f"data.path={data}", "model.arch=ngram_attention", "model.embed_size=32",
                 "model.dropout=0", "tokenizer.min_freq=1", "trainer.max_minutes=0", "trainer.max_epochs=6",
                 "trainer.batch_size=16", "trainer.lr=1e-2", "trainer.warmup_steps=5", "trainer.patience=0",
                 "trainer.progress=false", "diag.examples=0", "explorer.examples=0"]
    cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), OmegaConf.from_dotlist(overrides))
    metrics = run_training(cfg, tmp_path / "run", ClassificationTask)
    assert metrics["test.accuracy"] >= 0.95
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "tokenizer.kind=char: 100% of the training letters are of scripts written without spaces (Han 100%)" in report
    assert "model.ngrams=5, model.buckets=65536: character tokens" in report
    assert "n-gram vocabulary: " in report and "in at least 2 training texts" in report
    assert "TF-IDF (character 1-5-grams)" in report
    assert json.loads((tmp_path / "run" / "baseline.json").read_text())["features"] == "char"
    # characters: the model votes with a TF-IDF companion, its share chosen on valid, each alone reported too
    assert metrics["valid.tfidf_share"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert {"test.model_alone.accuracy", "test.tfidf_alone.accuracy", "test.tfidf_alone.macro_f1"} <= set(metrics)
    assert "TF-IDF companion, its share of the vote" in report and "TF-IDF companion: " in report
    # the best checkpoint is the one where the model alone was best on valid (the first such evaluation)
    rows = [line.split(",") for line in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    alone = [(int(step), float(v)) for step, _, _, key, v in rows if key == "valid.model_alone.macro_f1"]
    assert len(alone) == 6 and metrics["train.best_step"] == max(alone, key=lambda sv: (sv[1], -sv[0]))[0]
    # the checkpoint carries the n-gram vocabulary, the companion and its share: attnapps.predict rebuilds the
    # same system from it -- its labels on the test texts score exactly the reported test accuracy
    test = [line.split("\t") for line in (data / "test.tsv").read_text(encoding="utf-8").splitlines()]
    r = run_cli("task=classification", f"run={tmp_path / 'run'}", "top=1", module="attnapps.predict",
                input="".join(text + "\n" for text, _ in test))
    assert r.returncode == 0, r.stderr
    predicted = [row.split("\t")[0] for row in r.stdout.splitlines()]
    assert sum(p == gold for p, (_, gold) in zip(predicted, test)) / len(test) == pytest.approx(metrics["test.accuracy"])


def test_baseline_uses_character_ngrams_only_for_unspaced_text(tmp_path):
    chinese_sentiment(tmp_path, random.Random(1))
    splits, _, _ = load_examples(str(tmp_path))
    assert features([t for t, _ in splits["train"]]) == "char"
    assert features(["the film was good", "the film was bad"] * 20) == "word"
    # on unspaced clauses the word baseline sees only unknown "words" in the test split; characters work
    word = tfidf_logreg(splits["train"], splits["test"], kind="word")
    char = tfidf_logreg(splits["train"], splits["test"])
    assert char["features"] == "char" and char["accuracy"] >= 0.9 and word["accuracy"] < 0.75


def test_embedded_chinese_sets_load_with_one_key():
    splits, labels, _ = load_examples("", embedded="zh")
    assert len(labels) == 10 and "inkscape" in labels and len(splits["test"]) > 2000
    assert features([t for t, _ in splits["train"][:2000]]) == "char"
    pairs, _ = load_pairs("", "", "", embedded="en-zh")
    src, tgt = pairs["test"][0]
    assert src.isascii() and not tgt.isascii() and len(pairs["train"]) > 20000


def test_auto_tokenizer_follows_the_script_and_the_sparsity_of_words():
    from attnapps.data import scripts
    from attnapps_tasks.classification import auto

    english = ["the film was good", "the film was bad", "a good film"] * 20
    assert auto.held_out_oov(english) == 0 and auto.choose_tokenizer(scripts.profile(english), 0)[0] == "word"
    rng = random.Random(0)
    sparse = [" ".join("".join(rng.choice("ابتثجحخدذرزسشصضطظعغفقكلمنهوي") for _ in range(5)) for _ in range(4))
              for _ in range(50)]  # every word new: nothing to learn from words
    assert auto.held_out_oov(sparse) == 1.0
    kind, why = auto.choose_tokenizer(scripts.profile(sparse), auto.held_out_oov(sparse))
    assert kind == "char" and "words are sparse: 100%" in why and "Arabic 100%" in why
    chinese = ["我爱北京", "今天天气很好"] * 10
    assert auto.choose_tokenizer(scripts.profile(chinese), auto.held_out_oov(chinese))[0] == "char"
    # what the user sets is kept; n-gram order and hash size follow character tokens only when unset
    cfg = OmegaConf.structured(ClassificationConfig)
    notes = auto.resolve_tokenizer(cfg, auto.text_units(chinese))
    assert (cfg.tokenizer.kind, cfg.model.ngrams, cfg.model.buckets) == ("char", 5, 65536) and len(notes) == 4
    assert cfg.model.tfidf == "on" and any(n.startswith("model.tfidf=on") for n in notes)
    assert (cfg.model.label_smoothing, cfg.trainer.ema) == (0.1, 0.999)  # against memorising rare n-grams
    auto.resolve(cfg, [500] * 20, 20)
    assert (cfg.model.arch, cfg.model.min_count) == ("ngram_attention", 2)  # an n-gram vocabulary, min_df 2
    cfg = OmegaConf.structured(ClassificationConfig)
    cfg.tokenizer.kind, cfg.model.ngrams, cfg.trainer.ema = "word", 3, 0.5
    auto.resolve_tokenizer(cfg, auto.text_units(chinese))
    assert (cfg.tokenizer.kind, cfg.model.ngrams, cfg.model.buckets) == ("word", 3, 0)
    assert (cfg.model.label_smoothing, cfg.trainer.ema) == (0.0, 0.5)  # words: as before; the set value kept
    assert cfg.model.tfidf == "on"  # the vote, with words too
    auto.resolve(cfg, [10] * 20, 20)  # short texts, ample budget: the BiLSTM, which has no n-grams to fill
    assert cfg.model.arch == "bilstm_attention" and cfg.model.buckets == 0 and cfg.model.ngrams == 3
    cfg = OmegaConf.structured(ClassificationConfig)
    cfg.tokenizer.kind = "word"
    auto.resolve_tokenizer(cfg, auto.text_units(english))
    auto.resolve(cfg, [500] * 20, 20)  # long texts: the n-gram model, with the word defaults as before
    m = cfg.model
    assert (m.arch, m.ngrams, m.buckets, m.min_count) == ("ngram_attention", 2, 262144, 0)
    assert (cfg.model.label_smoothing, cfg.trainer.ema) == (0.0, 0.0)
