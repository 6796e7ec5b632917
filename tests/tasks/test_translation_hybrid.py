"""task=translation: the training-pair augmentation (augment.*), byte fallback, and the hybrid with the
word-by-word translation (decode.hybrid) -- known answers, sacreBLEU as the reference, round trips."""

import random

import numpy as np
import pytest
import torch

from attnapps.data import scripts
from attnapps.metrics import sacrebleu_scores
from attnapps.training.checkpoint import atomic_save, load_checkpoint
from attnapps_tasks.translation import augment, hybrid
from attnapps_tasks.translation.baseline import protected, translate_with_table, word_by_word
from tests.tasks.test_translation import SENTENCES, sentence_task

ANIMALS = [("the cat sleeps", "die Katze schläft"), ("the dog sleeps", "der Hund schläft"),
           ("a cat runs", "eine Katze rennt"), ("a dog runs", "ein Hund rennt"), ("Tom runs", "Tom rennt"),
           ("Tom sleeps", "Tom schläft"), ("a cat sleeps", "eine Katze schläft")] * 4


# ------------------------------------------------------------------ augmentation
def test_dictionary_pairs_are_the_words_both_directions_agree_on():
    pairs = dict(augment.dictionary_pairs(ANIMALS, scripts.split_words, scripts.split_words, scripts.join_words))
    assert pairs["cat"] == "Katze" and pairs["dog"] == "Hund" and pairs["sleeps"] == "schläft"
    assert pairs["runs"] == "rennt" and pairs["Tom"] == "Tom"
    # "the" goes to die or der, "a" to eine or ein: only a word whose best translation has it as its own best
    # source is kept, and never two source words for one target word
    assert len(set(pairs.values())) == len(pairs)
    once = dict(augment.dictionary_pairs(ANIMALS[:7], scripts.split_words, scripts.split_words, scripts.join_words,
                                         min_count=3))
    assert once == {"cat": "Katze", "sleeps": "schläft", "a": "eine", "runs": "rennt"}  # Tom, dog, the: twice


def test_passthrough_and_shape_keep_the_pair_parallel():
    assert augment.insert("The cat sleeps.", "X9", at_start=False) == "The cat sleeps X9."
    assert augment.insert("Die Katze schläft", "X9", at_start=False) == "Die Katze schläft X9"
    assert augment.insert("The cat.", "%s", at_start=True) == "%s The cat."
    assert augment.plain_shape("The cat sleeps.", "Die Katze schläft.") == ("the cat sleeps", "Die Katze schläft")
    rng = random.Random(0)
    strings = [augment.passthrough_string(rng) for _ in range(300)]
    assert any(s.isdigit() for s in strings) and any(s.istitle() and s.isalpha() for s in strings)
    assert any(any(c in "%{}<>/_" for c in s) for s in strings) and all(" " not in s and s for s in strings)
    aug = augment.Augmenter([("cat", "Katze")], 0.2, 0.3, 0.5)
    kinds = [aug.draw(random.Random(i)) for i in range(2000)]
    assert None not in kinds and abs(kinds.count("passthrough") / 2000 - 0.3) < 0.04
    assert augment.Augmenter([], 0.5, 0.0, 0.0).active is False  # no dictionary: nothing to draw


def test_augmented_batches_are_drawn_per_batch_and_never_longer_than_the_batch(tmp_path):
    """Some pairs of a training batch are replaced (fragments from the dictionary, pass-through strings on
    both sides, plain shapes), the same ones each time the batch comes (exact resume); none is longer than
    the batch's longest sentence, so padding -- the step's time -- is unchanged; evaluation batches and
    augment.*=0 are untouched."""
    task = sentence_task(tmp_path, "augment.fragments=0.3", "augment.passthrough=0.3", "augment.shape=0.3")
    assert task.augmenter is not None and task.augmenter.pairs  # four sentences: a word pair of each
    assert all(any(w in line.split("\t")[0] and f in line.split("\t")[1] for line in SENTENCES)
               for w, f in task.augmenter.pairs)
    batch = task.datasets["train"][:40]
    out = task.train_collate(batch)
    assert torch.equal(task.train_collate(batch)["src"], out["src"])
    assert out["src"].shape[1] <= max(len(s) for s, _ in batch) and out["tgt_in"].shape[1] <= 1 + max(len(t) for _, t in batch)
    pairs = [(task.src_tok.decode([i for i in s if i]), task.tgt_tok.decode([i for i in t if i][:-1]))
             for s, t in zip(out["src"].tolist(), out["tgt_out"].tolist())]
    originals = {tuple(line.split("\t")) for line in SENTENCES}
    changed = [p for p in pairs if p not in originals]
    assert 8 < len(changed) < 40
    words = dict(task.augmenter.pairs)
    for s, t in changed:
        fragment = words.get(s) == t
        shaped = (s[:1].isupper() is False) and not s.endswith(".")
        passed = {w for w in s.split()} & {w for w in t.split()} - {w for line in SENTENCES for w in line.split()}
        assert fragment or shaped or passed, (s, t)
    off = sentence_task(tmp_path, "augment.fragments=0", "augment.passthrough=0", "augment.shape=0")
    assert off.augmenter is None and torch.equal(off.train_collate(batch)["src"], off.collate(batch)["src"])


def test_byte_fallback_spells_unseen_characters_instead_of_unk(tmp_path):
    task = sentence_task(tmp_path, "tokenizer.byte_fallback=true", "tokenizer.vocab_size=1100")
    text = "Enter {min_days} ≤ 7"
    ids = task.src_tok.encode(text)
    assert task.src_tok.unk_id not in ids and task.src_tok.decode(ids) == text
    small = sentence_task(tmp_path, "tokenizer.byte_fallback=true", "tokenizer.vocab_size=120")  # too small: off
    assert small.src_tok.unk_id in small.src_tok.encode(text)


# ------------------------------------------------------------------ the hybrid
def test_the_chosen_table_translates_word_by_word_and_copies_unknown_words():
    splits = {"valid": ANIMALS[:3], "test": ANIMALS[3:6]}
    base = word_by_word(ANIMALS, splits, scripts.split_words, "13a")
    assert translate_with_table(base["table"], "a dog runs").endswith("Hund rennt")  # known words translated
    assert translate_with_table(base["table"], "") == ""
    assert translate_with_table(base["table"], "Zorro runs") == "Zorro rennt"  # unknown: copied


@pytest.mark.parametrize("token, kept", [
    ("%(name)s", True), ("%s:", True), ("{count}", True), ("<b>", True), ("--all", True), ("-h,", True),
    ("30", True), ("1990s", True), ("snake_case", True), ("camelCase", True), ("URL", True), ("/usr/bin", True),
    ("“%(object)s.”", True), ("user@host", True),
    ("Hello", False), ("world.", False), ("“quoted”", False), ("A", False), ("e-mail", False), ("-", False),
    ("Kurdish", False), ("(Sorani)", False), ("版本2", False), ("", False)])
def test_protected_tokens_are_code_not_words(token, kept):
    assert protected(token) is kept


def test_protect_copies_code_like_tokens_whole():
    """``decode.protect``: a placeholder, option or number goes through the word-by-word translation as
    written, where the plain word split cuts it into pieces and translates them (``s`` -> ``ist``)."""
    table = {"administration": "Verwaltung", "s": "ist", "app": "App", "the": "die", "remove": "entfernen",
             "is": "ist", "too": "zu", "large": "groß"}
    assert translate_with_table(table, "%(app)s administration") == "% ( App) ist Verwaltung"
    assert translate_with_table(table, "%(app)s administration", protect=True) == "%(app)s Verwaltung"
    assert translate_with_table(table, "%s is too large", protect=True) == "%s ist zu groß"
    assert translate_with_table(table, "-r, --recursive remove", protect=True) == "-r, --recursive entfernen"
    assert translate_with_table(table, "the Zorro", protect=True) == "die Zorro"  # unknown words: copied as before
    assert translate_with_table(table, "", protect=True) == ""


def test_features_known_values():
    f = hybrid.features([-4.0, -9.0], [3, 2], [-2.0, -1.0], [["Der", "Hund"], ["Zorro", "rennt"]],
                        ["Zorro", "runs"], {"runs"}, alpha=1.0, word_by_word=1)
    lp = [(5 + 3 + 1) / 6, (5 + 2 + 1) / 6]
    assert np.allclose(f, [[-4.0 / lp[0], -2.0, 0.0, 1.0, 0.0, 0.0], [-9.0 / lp[1], -1.0, 1.0, 1.0, 1.0, 0.5]])


def test_tune_finds_the_weights_that_choose_right_and_scores_as_sacrebleu():
    """Two sentences: in the first (half its words unseen) the word-by-word candidate is right, in the
    second the model's. Only weights that trust the word-by-word candidate where the source is unknown
    get both; the tuned scores are sacreBLEU's on the chosen texts, and the share is one in two."""
    refs = ["Zorro rennt schnell nach Hause", "der Hund schläft im Garten"]
    cands = [["die Katze schläft im Garten", refs[0]], [refs[1], "Hund schläft Garten"]]
    feats = [np.array([[-1.0, 0, 0, 1, 0, 0], [-2.0, 0, 1, 1, 0, 0.5]]),
             np.array([[-1.0, 0, 0, 1, 0, 0], [-2.0, 0, 1, 1, 0, 0.0]])]
    weights, scores = hybrid.tune(feats, cands, refs, "13a")
    assert hybrid.choose(feats, weights) == [1, 0]
    assert weights[2] < 1 and weights[2] + 0.5 * weights[5] > 1
    ref = sacrebleu_scores([refs[0], refs[1]], refs, "13a")
    assert scores["bleu"] == pytest.approx(ref["bleu"]) and scores["chrf"] == pytest.approx(ref["chrf"])
    assert scores["share"] == 0.5
    # a pool where the choice is imperfect: the tuned scores are still those sacreBLEU gives the choice
    cands2 = [["die Katze schläft", "Zorro rennt"], ["der Hund", "Hund schläft Garten"]]
    weights2, scores2 = hybrid.tune(feats, cands2, refs, "13a")
    chosen = [c[k] for c, k in zip(cands2, hybrid.choose(feats, weights2))]
    ref2 = sacrebleu_scores(chosen, refs, "13a")
    assert scores2["bleu"] == pytest.approx(ref2["bleu"]) and scores2["chrf"] == pytest.approx(ref2["chrf"])


def test_the_hybrid_is_chosen_on_valid_kept_with_the_weights_and_decodes_test_with_them(tmp_path):
    """The final valid evaluation tunes the weights (kept in the task state, so best.pt carries them to
    predict), reports how often the word-by-word candidate won, and later decoding uses them: the chosen
    translation is the pool's best under the weights."""
    task = sentence_task(tmp_path, "decode.beam=3", "decode.hybrid=true", "model.hidden_size=32",
                         "model.embed_size=32")
    task.datasets["valid"] = task.datasets["test"]
    task.refs["valid"], task.sources["valid"] = task.refs["test"], task.sources["test"]
    model = task.build_model().eval()
    assert task.state.hybrid is None
    result = task.evaluate(model, "valid", final=True)
    h = task.state.hybrid
    assert len(h["weights"]) == len(hybrid.FEATURES) and h["weights"][0] == 1.0 and h["table"]
    assert 0.0 <= result.metrics["word_by_word_share"] <= 1.0
    redone = task.translate(model, [s for s, _ in task.datasets["valid"]], 3, task.cfg.decode.alpha, attention=False,
                            texts=task.sources["valid"])  # decoding with the chosen weights gives what tuning chose
    assert [task.tgt_tok.decode(t) for t in redone.tokens] == result.outputs["texts"]
    assert h["valid"]["bleu"] == pytest.approx(result.metrics["bleu"])
    pool = {}
    sources = [s for s, _ in task.datasets["test"]]
    texts = task.sources["test"]
    task.translate(model, sources, 3, task.cfg.decode.alpha, attention=False, pool=pool, texts=texts)
    hyps = task.translate(model, sources, 3, task.cfg.decode.alpha, attention=False, texts=texts)
    for s, tokens in zip(sources, hyps.tokens):
        feats, texts = pool[id(s)]
        assert task.tgt_tok.decode(tokens) == texts[int(np.argmax(feats @ np.array(h["weights"])))]
    atomic_save({"task_state": task.state_dict()}, tmp_path / "state.pt")  # as best.pt holds it
    again = type(task)(task.cfg)
    again.load_state_dict(load_checkpoint(tmp_path / "state.pt")["task_state"])  # weights_only=True
    assert again.state.hybrid["weights"] == h["weights"] and again.state.hybrid["table"] == h["table"]


def test_the_word_by_word_candidate_copies_an_unseen_string_as_written(tmp_path):
    """With byte fallback (the default from vocabulary 1024 on) the characters of a placeholder the training
    text never had survive in the word-by-word candidate, not as ``<unk>`` -- what the hybrid can pick for a string the model
    cannot translate; the source's own text, not its decoded pieces, is what the word-level models read."""
    task = sentence_task(tmp_path, "tokenizer.vocab_size=1100", "decode.beam=2", "model.hidden_size=32",
                         "model.embed_size=32")
    model = task.build_model().eval()
    text = "Please enter {code_7} <b>"
    ids = task.src_tok.encode(text)
    candidates = task.word_by_word_candidates(model, task.word_by_word()["table"], lambda s: text)
    (tokens, logp), = candidates([ids])[0]
    out = task.tgt_tok.decode(tokens)
    # every character survives (the baseline's own word split spaces "{" off: "{ code_7}")
    assert "code_7}" in out and "{" in out and "<" in out and "\u2047" not in out
    assert logp < 0
    assert task.src_tok.decode(ids) == text


def test_the_protected_candidate_keeps_a_placeholder_whole_and_the_run_reports_it_alone(tmp_path):
    """With ``decode.protect`` (default) the hybrid's word-by-word candidate carries ``%(count)d`` whole;
    the baseline rows of ``extra_metrics`` add that candidate alone (``baseline_protected.*``), which on a
    test set of placeholders is ahead of the plain word-by-word baseline that cuts them up."""
    task = sentence_task(tmp_path, "tokenizer.vocab_size=1100", "decode.beam=2", "model.hidden_size=32",
                         "model.embed_size=32")
    model = task.build_model().eval()
    text = "Please enter %(count)d codes."
    candidates = task.word_by_word_candidates(model, task.word_by_word()["table"], lambda s: text, protect=True)
    (tokens, _), = candidates([task.src_tok.encode(text)])[0]
    assert "%(count)d" in task.tgt_tok.decode(tokens)
    (tokens, _), = task.word_by_word_candidates(model, task.word_by_word()["table"], lambda s: text)(
        [task.src_tok.encode(text)])[0]
    assert "%(count)d" not in task.tgt_tok.decode(tokens)
    placeholders = tmp_path / "ph.tsv"
    # placeholders whose names are training words: cut up, "valid" and "code" would be translated
    placeholders.write_text("Please enter {valid}.\tBitte {valid} eingeben.\n"
                            "%(code)s computer\t%(code)s Computer\n", encoding="utf-8")
    task.cfg.data.extra_test = str(placeholders)
    task.load_data()
    out = task.extra_metrics(model)
    assert out["baseline_protected.test.ph.chrf"] > out["baseline.test.ph.chrf"]
    assert out["baseline_protected.test.ph.bleu"] > out["baseline.test.ph.bleu"]
    assert {"baseline_protected.valid.bleu", "baseline_protected.test.chrf"} <= set(out)
