"""task=translation: adapter formats and errors, decoding equivalences, learning, sacreBLEU, predict."""

import json
import random
import re
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import train as run_training
from attnapps.data import pad_batch
from attnapps.attention import record
from attnapps.decoding import beam_search, greedy, step_attention
from attnapps.errors import DataError
from attnapps_tasks.translation.data import load_pairs
from attnapps_tasks.translation.model import RNNConfig, RNNSeq2Seq, TransformerConfig, TransformerSeq2Seq
from attnapps_tasks.translation.task import TranslationConfig, TranslationTask
from tests.conftest import run_cli


def write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------- adapter
def test_tsv_layout_and_reverse(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / f"{split}.tsv", "Hello .\tHallo .\n\nA cat .\tEine Katze .\n")
    splits, policy = load_pairs(str(tmp_path), "en", "de")
    assert splits["train"] == [("Hello .", "Hallo ."), ("A cat .", "Eine Katze .")] and policy.skipped == 0
    rev, _ = load_pairs(str(tmp_path), "en", "de", reverse=True)
    assert rev["test"][0] == ("Hallo .", "Hello .")


def test_parallel_layout_multi30k_names_and_carved_valid(tmp_path):
    src = [f"sentence {i} ." for i in range(40)]
    write(tmp_path / "train.en", "\n".join(src) + "\n")
    write(tmp_path / "train.de", "\n".join(f"satz {i} ." for i in range(40)) + "\n")
    write(tmp_path / "test_2016_flickr.en", "a b\n")
    write(tmp_path / "test_2016_flickr.de", "x y\n")
    splits, _ = load_pairs(str(tmp_path), "en", "de", seed=3)
    assert len(splits["valid"]) == 2 and len(splits["train"]) == 38 and splits["test"] == [("a b", "x y")]
    assert not set(splits["valid"]) & set(splits["train"])
    assert splits["train"][0] == ("sentence 0 .", "satz 0 .") or splits["valid"][0] == ("sentence 0 .", "satz 0 .")


@pytest.mark.parametrize("content, message", [
    ("good\tgut\nno tab here\n", "train.tsv:2: expected 'source<TAB>target'"),
    ("good\tgut\n\tleer\n", "train.tsv:2: empty source side"),
    ("good\tgut\na\tb\tc\n", "train.tsv:2: expected 'source<TAB>target', found 2 tabs"),
    (b"good\tgut\nbad \xff\xfe bytes\tx\n", "train.tsv:2: not valid UTF-8"),
])
def test_malformed_lines_name_file_and_line_or_are_skipped(tmp_path, content, message):
    write(tmp_path / "train.tsv", content)
    write(tmp_path / "valid.tsv", "v\tw\n")
    write(tmp_path / "test.tsv", "a\tb\nc\td\n")
    with pytest.raises(DataError, match=message):
        load_pairs(str(tmp_path), "en", "de")
    splits, policy = load_pairs(str(tmp_path), "en", "de", on_error="skip")
    assert policy.skipped == 1 and message in policy.examples[0]
    assert splits["train"][0] == ("good", "gut")


def test_unequal_parallel_files_are_rejected(tmp_path):
    write(tmp_path / "train.en", "a\nb\nc\n")
    write(tmp_path / "train.de", "x\ny\n")
    write(tmp_path / "test.en", "a\n")
    write(tmp_path / "test.de", "x\n")
    with pytest.raises(DataError, match="train.de: 2 lines, but train.en has 3"):
        load_pairs(str(tmp_path), "en", "de")
    splits, policy = load_pairs(str(tmp_path), "en", "de", on_error="skip")
    assert policy.skipped == 1


@pytest.mark.slow
def test_missing_data_errors_via_cli(tmp_path):
    r = run_cli("task=translation", f"data.path={tmp_path}/nope")
    assert r.returncode == 2 and "data.path is not a directory" in r.stderr and "Traceback" not in r.stderr
    write(tmp_path / "train.tsv", "a\tb\n")
    r = run_cli("task=translation", f"data.path={tmp_path}")
    assert r.returncode == 2 and "no test split" in r.stderr


# ---------------------------------------------------------------------------------- decoding
def tiny_models():
    torch.manual_seed(0)
    rnn = RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, attention="additive", dropout=0.0), 30, 30)
    rnn_mh = RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, cell="lstm", attention="multihead", heads=2,
                                  dropout=0.0), 30, 30)
    tr = TransformerSeq2Seq(TransformerConfig(hidden_size=32, heads=4, layers=2, ff_size=64, dropout=0.0), 30, 30)
    # without input feeding, teacher forcing takes its own path (one RNN call, one attention call)
    gru_2 = RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, layers=2, attention="additive", dropout=0.0,
                                 input_feed=False), 30, 30)
    lstm_mh = RNNSeq2Seq(RNNConfig(embed_size=16, hidden_size=32, cell="lstm", attention="multihead", heads=2,
                                   dropout=0.0, input_feed=False), 30, 30)
    return [m.eval() for m in (rnn, rnn_mh, tr, gru_2, lstm_mh)]


MODEL_IDS = ["rnn-additive", "lstm-multihead", "transformer", "gru-2-layers-no-feed", "lstm-multihead-no-feed"]


@pytest.mark.parametrize("model", tiny_models(), ids=MODEL_IDS)
def test_beam_one_equals_greedy_on_real_models(model):
    src, src_len = pad_batch([[5, 6, 7, 8], [9, 10], [11, 12, 13]])
    g = greedy(model.step, model.encode(src, src_len), 3, 2, 3, 12)
    b = beam_search(model.step, model.encode(src, src_len), 3, 2, 3, 12, beam=1)
    assert g.tokens == b.tokens and g.scores == pytest.approx(b.scores, abs=1e-4)
    b5 = beam_search(model.step, model.encode(src, src_len), 3, 2, 3, 12, beam=5, alpha=0.0)
    assert all(s5 >= s1 - 1e-4 for s5, s1, t in zip(b5.scores, g.scores, g.tokens) if len(t) < 12)


@pytest.mark.parametrize("model", tiny_models(), ids=MODEL_IDS)
def test_incremental_decoding_equals_full_forward(model):
    src, src_len = pad_batch([[5, 6, 7, 8], [9, 10]])
    tgt = torch.tensor([[2, 14, 15, 16, 17], [2, 18, 19, 20, 0]])
    full = torch.log_softmax(model(src, src_len, tgt), -1)  # (batch, 5, vocab)
    state = model.encode(src, src_len)
    for t in range(tgt.size(1)):
        lp, state = model.step(tgt[:, t], state)
        assert torch.allclose(lp, full[:, t], atol=1e-5)
    # the decoding attention (a view over record, step by step) == the full forward's, recorded
    att = step_attention(model, {"src": src, "src_len": src_len}, [[14, 15, 16, 17, 9], [18, 19, 20]], bos=2)
    with record(model) as maps:
        model(src, src_len, tgt)
    name = next(n for n, m in model.named_modules() if m is model.explained_attention()[0])
    forward_att = maps[name].mean(1)  # (batch, 5, src_len)
    assert att[0].shape == (5, 4) and att[1].shape == (3, 4)
    assert torch.allclose(att[0], forward_att[0], atol=1e-5) and torch.allclose(att[1], forward_att[1, :3], atol=1e-5)
    assert torch.allclose(att[0].sum(-1), torch.ones(5), atol=1e-5)
    assert (att[1][:, 2:] == 0).all()  # padding of the second source gets no attention


# ---------------------------------------------------------------------------------- learning end to end
def reverse_data(directory, n_train=2000, seed=0):
    rng = random.Random(seed)
    letters = "abcdefghij"

    def lines(n, alignments=None):
        out = []
        for _ in range(n):
            words = [rng.choice(letters) for _ in range(rng.randint(3, 7))]
            out.append(f"{' '.join(words)}\t{' '.join(reversed(words))}\n")
            if alignments is not None:  # gold: source word i is target word n - 1 - i
                alignments.append(" ".join(f"{i}-{len(words) - 1 - i}" for i in range(len(words))) + "\n")
        return "".join(out)
    write(directory / "train.tsv", lines(n_train))
    write(directory / "valid.tsv", lines(60))
    gold = []
    write(directory / "test.tsv", lines(60, gold))
    write(directory / "test.align", "".join(gold))


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    """A tiny RNN with additive attention trained to reverse letter sequences (about 20 s)."""
    root = tmp_path_factory.mktemp("reverse")
    reverse_data(root / "data")
    overrides = [f"data.path={root / 'data'}", f"data.alignments={root / 'data' / 'test.align'}", "tokenizer.vocab_size=24", "model.embed_size=32",
                 "model.hidden_size=64", "model.dropout=0", "model.label_smoothing=0", "trainer.max_minutes=0",
                 "trainer.max_epochs=0", "trainer.max_steps=500", "trainer.eval_every=250", "trainer.batch_size=32",
                 "trainer.lr=5e-3", "trainer.warmup_steps=30", "trainer.progress=false", "decode.beam=3"]
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist(overrides))
    metrics = run_training(cfg, root / "run", TranslationTask)
    return root, metrics


@pytest.mark.slow
def test_tiny_model_learns_to_reverse(reverse_run):
    root, metrics = reverse_run
    assert metrics["test.bleu"] > 90, metrics
    # its attention aligns each reversed letter with its source: the alignment error rate is low, and
    # removing the most attended source letter costs far more than removing a random one
    assert metrics["diag.aer"] < 0.2, metrics["diag.aer"]
    assert metrics["diag.erase_max"] > 3 * metrics["diag.erase_random"]
    report = (root / "run" / "report.md").read_text()
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in report and "plots/alignment_0.png" in report
    assert "alignment error rate (`diag.aer`): against the gold word alignments" in report
    assert ("test decoding: beam 3, length penalty alpha 2.0, lexicon weight 1.25; hybrid with the word-by-word "
            "translation (`decode.hybrid`, weights chosen on valid: model 1, channel " in report)
    assert (root / "run" / "plots" / "alignment_0.png").is_file()
    # the word-by-word baseline beside it: letters in source order, never reversed, so far behind
    assert metrics["baseline.test.bleu"] < 30 < metrics["test.bleu"] and metrics["baseline.iterations"] in (1, 2, 3, 5, 10)
    assert "On valid, this model is ahead of the word-by-word baseline on sacreBLEU and chrF." in report


@pytest.mark.slow
def test_bleu_equals_sacrebleu_cli(reverse_run):
    root, metrics = reverse_run
    refs = root / "refs.txt"
    refs.write_text("".join(line.split("\t")[1] for line in open(root / "data" / "test.tsv")))
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(refs), "-i", str(root / "run" / "test_hypotheses.txt"),
                          "-m", "bleu", "-b", "-w", "6"], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) == pytest.approx(metrics["test.bleu"], abs=1e-4)
    assert json.loads((root / "run" / "metrics.json").read_text())["test.bleu"] == pytest.approx(metrics["test.bleu"])


@pytest.mark.slow
def test_predict_cli_round_trip(reverse_run, tmp_path):
    root, _ = reverse_run
    r = run_cli("task=translation", f"run={root / 'run'}", "beam=3", f"plot_dir={tmp_path}", module="attnapps.predict",
                input="a b c d\nj i h\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["d c b a", "h i j"]
    assert (tmp_path / "align_0.png").is_file() and (tmp_path / "align_1.png").is_file()
    (tmp_path / "in.txt").write_text("e f g\n")
    r = run_cli("task=translation", f"run={root / 'run'}", f"input={tmp_path / 'in.txt'}",
                f"output={tmp_path / 'out.txt'}", module="attnapps.predict")
    assert r.returncode == 0 and (tmp_path / "out.txt").read_text() == "g f e\n"
    r = run_cli("task=classification", f"run={root / 'run'}", module="attnapps.predict")
    assert r.returncode == 2


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_separate_vocabularies_build_train_and_round_trip(tmp_path, arch):
    reverse_data(tmp_path, n_train=200)
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist([
        f"data.path={tmp_path}", "tokenizer.joint=false", "tokenizer.vocab_size=20", "tokenizer.model_type=bpe",
        f"model.arch={arch}", "model.hidden_size=32", "model.embed_size=16", "model.layers=1", "model.ff_size=32"]))
    task = TranslationTask(cfg)
    task.load_data()
    assert task.src_tok is not task.tgt_tok
    model = task.build_model()
    loss, n = task.loss(model, task.collate(task.datasets["train"][:4]))
    assert torch.isfinite(loss) and int(n) == sum(len(t) + 1 for _, t in task.datasets["train"][:4])
    again = TranslationTask(cfg)
    again.load_state_dict(task.state_dict())
    assert again.tgt_tok.encode("a b c") == task.tgt_tok.encode("a b c") and again.src_tok is not again.tgt_tok


def test_trivial_baseline_copies_the_source_and_is_in_metrics_json(reverse_run):
    """The copy baseline is sacreBLEU of the sources against the references (13a for a Latin target)."""
    import json

    import sacrebleu

    root, metrics = reverse_run
    pairs = [line.split("\t") for line in (root / "data" / "test.tsv").read_text().splitlines() if line]
    src, ref = [s for s, _ in pairs], [t for _, t in pairs]
    expected = sacrebleu.corpus_bleu(src, [ref], tokenize="13a").score
    saved = json.loads((root / "run" / "metrics.json").read_text())
    assert saved["trivial.test.bleu"] == pytest.approx(expected) == metrics["trivial.test.bleu"]
    assert saved["trivial.test.chrf"] == pytest.approx(sacrebleu.corpus_chrf(src, [ref]).score)
    assert metrics["test.bleu"] > saved["trivial.test.bleu"] + 50  # reversing is learned, copying is not


def test_the_hybrid_chosen_on_valid_travels_in_best_pt_and_predict_decodes_with_it(reverse_run):
    """``decode.hybrid`` (on by default): the final valid evaluation chooses the weights; the trainer writes
    the task state back into best.pt, so a reloaded run decodes test as the run did. Reversing letters
    is something word by word (in source order) gets wrong: the run learned to trust its own model."""
    import json

    from attnapps.predict import load_run
    from attnapps.training.checkpoint import load_checkpoint

    root, metrics = reverse_run
    state = load_checkpoint(root / "run" / "checkpoints" / "best.pt")["task_state"]
    assert len(state["hybrid"]["weights"]) == 6 and set(state["hybrid"]["table"]) == set("abcdefghij")
    saved = json.loads((root / "run" / "metrics.json").read_text())
    assert saved["valid.word_by_word_share"] < 0.1 and saved["test.word_by_word_share"] < 0.1
    task, model = load_run(root / "run")
    assert task.state.hybrid["weights"] == state["hybrid"]["weights"]
    task.load_data()
    again = task.evaluate(model, "test", final=True)
    assert again.metrics["bleu"] == pytest.approx(metrics["test.bleu"])
    assert (root / "run" / "test_hypotheses.txt").read_text().splitlines() == again.outputs["texts"]


def test_extra_test_sets_are_scored_by_name_with_the_final_model(tmp_path):
    """data.extra_test: a folder (named by it) and a .tsv file (named by its stem) become test.<name>.*,
    scored exactly as sacreBLEU scores the model's own translations of them; bad entries are one line.
    The run copies (model.copy=true): report.html shows P(copy) x attention and what was copied."""
    import sacrebleu

    reverse_data(tmp_path / "data", n_train=300)
    write(tmp_path / "far" / "test.tsv", "a b c\tc b a\nd e\te d\nf g h i\ti h g f\n")
    write(tmp_path / "near.tsv", "a a b\tb a a\n")
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist([
        f"data.path={tmp_path / 'data'}", f"data.extra_test={tmp_path / 'far'},{tmp_path / 'near.tsv'}",
        "tokenizer.vocab_size=20", "model.hidden_size=32", "model.embed_size=16", "trainer.max_minutes=0",
        "trainer.max_epochs=0", "trainer.max_steps=30", "trainer.progress=false", "decode.beam=2",
        "diag.examples=0", "model.copy=true", "explorer.examples=3"]))
    metrics = run_training(cfg, tmp_path / "run", TranslationTask)
    from attnapps.predict import load_run

    task, model = load_run(tmp_path / "run")
    for name, path in (("far", tmp_path / "far" / "test.tsv"), ("near", tmp_path / "near.tsv")):
        pairs = [line.split("\t") for line in path.read_text().splitlines()]
        hyps = task.translate(model, [task.src_tok.encode(s) for s, _ in pairs], beam=2, alpha=cfg.decode.alpha)
        texts = [task.tgt_tok.decode(h) for h in hyps.tokens]
        assert metrics[f"test.{name}.bleu"] == pytest.approx(sacrebleu.corpus_bleu(texts, [[t for _, t in pairs]]).score)
        assert metrics[f"test.{name}.chrf"] == pytest.approx(sacrebleu.corpus_chrf(texts, [[t for _, t in pairs]]).score)
        copy = sacrebleu.corpus_chrf([s for s, _ in pairs], [[t for _, t in pairs]]).score
        assert metrics[f"trivial.test.{name}.chrf"] == pytest.approx(copy)
    assert "### Further test sets (`data.extra_test`)" in (tmp_path / "run" / "report.md").read_text()
    html = (tmp_path / "run" / "report.html").read_text()
    data = json.loads(re.search(r"<script type='application/json' id='data'>(.*?)</script>", html, re.S).group(1))
    for ex in data["examples"]:
        view, copy = ex["views"][0], ex["copy"]
        assert view["name"].startswith("copy: P(copy) x attention") and (view["q"], view["k"]) == ("output", "source")
        assert len(copy["p"]) == len(ex["seqs"]["output"]) == len(copy["from"])
        for row, p in zip(view["heads"][0], copy["p"]):  # a row of the copy view sums to P(copy)
            assert sum(row) == pytest.approx(1000 * p, abs=len(row) + 1)
    for spec, message in ((tmp_path / "missing", "no such file or folder"),
                          (f"{tmp_path / 'far'},{tmp_path / 'far' / 'test.tsv'}", "a second test set named 'far'")):
        bad = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"data.extra_test={spec}"]))
        with pytest.raises(DataError, match=message):
            TranslationTask(bad).load_data()


def test_extra_test_list_is_one_string_for_hydra_not_a_sweep():
    from attnapps.run import expand_aliases

    assert expand_aliases(["task=translation", "data.extra_test=/a/x,/b/y"]) == ["task=translation",
                                                                                 "data.extra_test='/a/x,/b/y'"]
    assert expand_aliases(["task=translation", "data.extra_test=/a/it's,/b"])[1] == "data.extra_test=\"/a/it's,/b\""
    assert expand_aliases(["task=translation", "data.extra_test=/only/one"])[1] == "data.extra_test=/only/one"


SENTENCES = ["The police officer drew his gun.\tDer Polizeibeamte zog seine Schusswaffe.",
             "She laid her glass aside.\tSie stellte das Glas zur Seite.",
             "I am working on the computer.\tIch arbeite gerade am Computer.",
             "Please enter a valid verification code.\tGeben Sie bitte einen gültigen Prüfcode ein."]


def sentence_task(tmp_path, *more):
    write(tmp_path / "d" / "train.tsv", "\n".join(SENTENCES * 30) + "\n")
    write(tmp_path / "d" / "test.tsv", "\n".join(SENTENCES) + "\n")
    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), OmegaConf.from_dotlist(
        [f"data.path={tmp_path / 'd'}", "tokenizer.vocab_size=120", *more]))
    task = TranslationTask(cfg)
    task.load_data()
    return task


def test_sampled_segmentations_are_the_same_text_drawn_again_for_each_batch(tmp_path):
    """``tokenizer.sampling``: every training sentence is re-segmented -- pieces that still spell the
    sentence, drawn anew for each batch (a batch's draw is a function of the batch: exact resume);
    evaluation batches and ``sampling=0`` keep the one best segmentation."""
    task = sentence_task(tmp_path, "tokenizer.sampling=0.1")
    batch = task.datasets["train"][:4]
    plain, sampled = task.collate(batch), task.train_collate(batch)
    assert torch.equal(task.train_collate(batch)["src"], sampled["src"])  # the same batch, the same draw
    for field, tok, k in (("src", task.src_tok, 0), ("tgt_out", task.tgt_tok, 1)):
        assert [tok.decode(row) for row in sampled[field].tolist()] == [tok.decode(e[k]) for e in batch]
    assert not torch.equal(plain["src"], sampled["src"])  # ... but not the best segmentation
    draws = {tuple(task.train_collate(task.datasets["train"][i:i + 4])["src"][0].tolist()) for i in range(0, 80, 4)}
    assert len(draws) > 1  # the first sentence of each batch is SENTENCES[0]: segmented more than one way
    off = sentence_task(tmp_path, "tokenizer.sampling=0")
    assert all(torch.equal(off.train_collate(batch)[k], off.collate(batch)[k]) for k in plain)


def test_channel_reranking_needs_the_word_lexicon_it_was_trained_with(tmp_path):
    """``decode.channel`` > 0 fits the word lexicon (target words -> source words) with the run; a run
    without it refuses the option in one line instead of decoding something else."""
    task = sentence_task(tmp_path, "decode.channel=0.5")
    channel = task.state.channel
    assert "Glas" in channel["target"] and "glass" in channel["source"] and channel["unspaced"] is False
    assert channel["ids"].shape == (len(channel["target"]) + 2, 32)
    plain = sentence_task(tmp_path, "decode.channel=0", "decode.hybrid=false")
    assert plain.state.channel is None
    model = plain.build_model()
    options = plain.cfg.decode.copy()
    options.channel = 0.5
    with pytest.raises(Exception, match=r"decode.channel=0.5: this run has no channel lexicon"):
        plain.translate(model, [plain.src_tok.encode("She laid her glass aside.")], 2, 2.0, options=options)


def test_word_channel_prefers_the_candidate_whose_words_account_for_the_source():
    """The channel's log P(source words | candidate words), from the table's own entries by hand: a
    word never seen in training translates nothing, a source word never seen costs every candidate the
    same; the candidate with the right word explains the source better than one with the wrong word."""
    import math

    from attnapps.data import scripts
    from attnapps_tasks.translation.lexicon import WordChannel, fit_word_channel

    train = [("the cat", "die Katze"), ("the dog", "der Hund"), ("a cat", "eine Katze"), ("a dog", "ein Hund")] * 5
    state = fit_word_channel(train, scripts.split_words, scripts.split_words)
    channel = WordChannel(state)

    def t(source_word, target_word):  # t(source word | target word) from the sparse table
        row = 0 if target_word is None else state["target"].index(target_word) + 2
        col = state["source"].index(source_word) + 1
        hits = (state["ids"][row] == col).nonzero()
        return float(state["probs"][row, hits[0, 0]]) if len(hits) else 0.0

    right, wrong, unseen = channel.log_probs(["cat"], [["Katze"], ["Hund"], ["Katze", "Zebra"]]).tolist()
    assert right == pytest.approx(math.log((t("cat", None) + t("cat", "Katze")) / 2 + 1e-4), rel=1e-5)
    assert unseen == pytest.approx(math.log((t("cat", None) + t("cat", "Katze")) / 3 + 1e-4), rel=1e-5)
    assert right > wrong and t("cat", "Katze") > 0.5
    with_new = channel.log_probs(["cat", "zebra"], [["Katze"], ["Hund"]]).tolist()
    assert with_new[0] - with_new[1] == pytest.approx(right - wrong, rel=1e-5)
