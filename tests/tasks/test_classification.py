"""task=classification: adapter formats and errors, the Keras-layout model, masking, overfitting, predict."""

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import train as run_training
from attnapps.errors import DataError
from attnapps_tasks.classification.data import load_examples
from attnapps_tasks.classification import auto
from attnapps_tasks.classification.model import (HASH_FOLD, BiLSTMAttention, BiLSTMConfig, Ensemble, HANConfig,
                                                  HierarchicalAttention, NgramAttention, NgramConfig, TransformerConfig,
                                                  TransformerClassifier, hashed_ngrams, ngram_vocabulary,
                                                  split_sentences)
from attnapps_tasks.classification.task import ClassificationConfig, ClassificationTask
from tests.conftest import run_cli


def bilstm(**kw):  # small test sizes: (the defaults 0 / -1 are "chosen from the data")
    return BiLSTMConfig(**{"embed_size": 16, "hidden_size": 8, "hops": 1, "dropout": 0.0, **kw})


def transformer(**kw):
    return TransformerConfig(**{"hidden_size": 16, "heads": 2, "layers": 1, "ff_size": 32, "dropout": 0.0, **kw})


def ngram(**kw):
    return NgramConfig(**{"embed_size": 16, "hops": 2, "ngrams": 2, "buckets": 262144, "dropout": 0.0, **kw})


def han(**kw):
    return HANConfig(**{"embed_size": 16, "hidden_size": 8, "dropout": 0.0, **kw})


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else lambda c: path.write_text(c, encoding="utf-8"))(content)


def test_tsv_three_classes_and_carved_valid(tmp_path):
    write(tmp_path / "train.tsv", "".join(f"text {i}\t{'abc'[i % 3]}\n" for i in range(30)))
    write(tmp_path / "test.tsv", "x\ta\ny\tc\n")
    splits, labels, policy = load_examples(str(tmp_path), seed=1)
    assert labels == ["a", "b", "c"] and len(splits["valid"]) == 3 and len(splits["train"]) == 27
    assert splits["test"] == [("x", "a"), ("y", "c")] and policy.skipped == 0


def test_csv_with_named_columns(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / f"{split}.csv", 'review,sentiment,id\n"good, really",pos,1\nbad,neg,2\n')
    splits, labels, _ = load_examples(str(tmp_path), "csv", text_column="review", label_column="sentiment")
    assert splits["train"] == [("good, really", "pos"), ("bad", "neg")] and labels == ["neg", "pos"]
    with pytest.raises(DataError, match="train.csv:1: no column 'text'"):
        load_examples(str(tmp_path), "csv")


def test_imdb_folder_layout(tmp_path):
    for split in ("train", "test"):
        for label, text in (("pos", "A great film.<br />Loved it."), ("neg", "Dull and long.")):
            for i in range(5):
                write(tmp_path / split / label / f"{i}_7.txt", text)
        write(tmp_path / split / "unsup" / "0_0.txt", "ignored")
    splits, labels, _ = load_examples(str(tmp_path), "imdb")
    assert labels == ["neg", "pos"] and len(splits["test"]) == 10
    assert ("A great film. Loved it.", "pos") in splits["train"] + splits["valid"]


@pytest.mark.parametrize("bad_train, bad_test, message", [
    ("no tab\n", "", "train.tsv:3: expected 'text<TAB>label'"),
    ("\tneg\n", "", "train.tsv:3: empty text"),
    (b"bad \xff\tneg\n", "", "train.tsv:3: not valid UTF-8"),
    ("", "b\tmaybe\n", "test.tsv:2: label 'maybe' does not occur in the training data"),
])
def test_malformed_input_names_file_and_line_or_is_skipped(tmp_path, bad_train, bad_test, message):
    good = b"good\tpos\nbad\tneg\n"
    write(tmp_path / "train.tsv", good + (bad_train if isinstance(bad_train, bytes) else bad_train.encode()))
    write(tmp_path / "valid.tsv", "v\tpos\nw\tneg\n")
    write(tmp_path / "test.tsv", "a\tpos\n" + bad_test)
    with pytest.raises(DataError, match=message):
        load_examples(str(tmp_path))
    splits, _, policy = load_examples(str(tmp_path), on_error="skip")
    assert policy.skipped == 1 and message in policy.examples[0]
    assert splits["train"] == [("good", "pos"), ("bad", "neg")] and splits["test"] == [("a", "pos")]


def test_keras_imdb_layout_shapes_and_parameter_count():
    """Embedding(V, 128) -> BiLSTM(64, return_sequences) -> Attention()([h, h]) -> Flatten -> Dense(1, sigmoid)."""
    vocab, maxlen = 20000, 200
    model = BiLSTMAttention(BiLSTMConfig(attention="dot", pooling="flatten", embed_size=128, hidden_size=64,
                                         hops=1, dropout=0.0), vocab, 1, max_len=maxlen)
    keras = {"embedding": vocab * 128,
             "bilstm": 2 * 4 * (64 * (128 + 64) + 64),  # Keras: one bias per gate
             "dense": maxlen * 128 + 1}
    torch_lstm_extra_bias = 2 * 4 * 64  # PyTorch's LSTM has two bias vectors (b_ih, b_hh) per gate
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(keras.values()) + torch_lstm_extra_bias
    assert model.embedding.weight.shape == (vocab, 128) and model.head.weight.shape == (1, maxlen * 128)
    ids = torch.randint(1, vocab, (3, 50))
    logits, w = model(ids, torch.tensor([50, 20, 7]))
    assert logits.shape == (3, 1) and w.shape == (3, 50)


@pytest.mark.parametrize("make", [
    lambda: BiLSTMAttention(bilstm(), 50, 3),
    lambda: BiLSTMAttention(bilstm(attention="general", hops=3), 50, 3),
    lambda: BiLSTMAttention(bilstm(attention="dot", pooling="flatten"), 50, 1, max_len=12),
    lambda: BiLSTMAttention(bilstm(attention="multihead", heads=2), 50, 1),
    lambda: TransformerClassifier(transformer(pooling="mean"), 50, 3),
    lambda: TransformerClassifier(transformer(pooling="cls"), 50, 3),
    lambda: Ensemble([BiLSTMAttention(bilstm(), 50, 3) for _ in range(2)]).eval(),
    lambda: NgramAttention(ngram(ngrams=3, buckets=97), 50, 3),
    lambda: NgramAttention(ngram(attention="multihead", heads=2, hops=3), 50, 1, mean=False),
    lambda: NgramAttention(ngram(ngrams=3), 50, 3, keys=torch.tensor([6 * 1_000_003 + 7, 8 * 1_000_003 + 9])),
    lambda: HierarchicalAttention(han(), 50, 3, sep_id=7),
    lambda: HierarchicalAttention(han(attention="scaled_dot"), 50, 1, sep_id=7),
])
def test_padding_gets_zero_attention_and_does_not_change_the_prediction(make):
    torch.manual_seed(0)
    model = make().eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    logits, w = model(ids, torch.tensor([5]))
    padded = torch.cat([ids, torch.full((1, 4), 0), ], 1)
    logits_p, w_p = model(padded, torch.tensor([5]))
    assert torch.allclose(logits, logits_p, atol=1e-5)
    assert (w_p[0, 5:] == 0).all() and torch.allclose(w_p[0, :5], w[0], atol=1e-5)


def test_ensemble_trains_members_separately_and_averages_their_logits():
    torch.manual_seed(0)
    members = [BiLSTMAttention(bilstm(), 50, 3) for _ in range(3)]
    model = Ensemble(members)
    ids, lengths = torch.randint(4, 50, (4, 7)), torch.tensor([7, 5, 3, 1])
    single = [m(ids, lengths) for m in members]
    logits, w = model.train()(ids, lengths)
    assert logits.shape == (3, 4, 3) and torch.allclose(logits[1], single[1][0])
    cfg = OmegaConf.structured(ClassificationConfig)
    task = ClassificationTask(cfg)
    batch = {"ids": ids, "lengths": lengths, "label": torch.tensor([0, 2, 1, 2])}
    loss, count = task.loss(model, batch)
    member_losses = [task.loss(m, batch)[0] for m in members]
    assert count == 4 and torch.allclose(loss, sum(member_losses) / 3)  # the mean of the members' losses
    logits, w = model.eval()(ids, lengths)
    assert torch.allclose(logits, torch.stack([s[0] for s in single]).mean(0), atol=1e-6)
    assert torch.allclose(w, torch.stack([s[1] for s in single]).mean(0), atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-5)


def small_cfg(path, *extra):
    overrides = [f"data.path={path}", "tokenizer.min_freq=1", "model.dropout=0", "model.embed_size=32",
                 "model.hidden_size=32", "trainer.max_minutes=0", "trainer.max_epochs=40", "trainer.batch_size=5",
                 "trainer.lr=1e-2", "trainer.warmup_steps=5", "trainer.patience=0", "trainer.progress=false",
                 "report.baseline=false", "model.ensemble=2", *extra]
    return OmegaConf.merge(OmegaConf.structured(ClassificationConfig), OmegaConf.from_dotlist(overrides))


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    words = {"pos": ["great", "lovely", "superb", "moving"], "neg": ["awful", "boring", "dull", "weak"]}
    lines = [f"the film was {words[lab][i % 4]} and {words[lab][(i + 1) % 4]} overall\t{lab}\n"
             for i in range(10) for lab in ("pos", "neg")]
    for split in ("train", "valid", "test"):
        write(root / "data" / f"{split}.tsv", "".join(lines))
    cfg = small_cfg(root / "data")
    metrics = run_training(cfg, root / "run", ClassificationTask)
    return root, metrics


def test_tiny_model_overfits_twenty_examples(overfit_run):
    root, metrics = overfit_run
    assert metrics["test.accuracy"] == 1.0 and metrics["test.macro_f1"] == 1.0
    report = (root / "run" / "report.md").read_text()
    assert "plots/confusion_matrix.png" in report and "plots/attention_tokens.png" in report
    assert "<span" in (root / "run" / "attention_tokens.html").read_text()


@pytest.mark.slow
def test_predict_cli_round_trip(overfit_run):
    root, _ = overfit_run
    r = run_cli("task=classification", f"run={root / 'run'}", "top=2", module="attnapps.predict",
                input="the film was superb and moving overall\nthe film was dull and boring overall\n")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["pos", "neg"]
    assert all(0.5 < float(row[1]) <= 1.0 and len(row[2].split(", ")) == 2 for row in rows)


@pytest.mark.slow
def test_tokenizer_shorthand_and_bad_choice_are_one_line_errors(tmp_path):
    r = run_cli("task=classification", "tokenizer=bogus", f"hydra.run.dir={tmp_path}")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and lines == ["error: bad value for config key 'tokenizer.kind': 'bogus'; choose one of auto, word, char, sentencepiece"]


def test_hashed_ngrams_are_the_hash_of_consecutive_ids():
    ids = torch.tensor([[3, 5, 7, 9]])
    assert hashed_ngrams(ids, 2, 1000).tolist() == [[(3 * 1_000_003 + 5) % 1000, (5 * 1_000_003 + 7) % 1000,
                                                     (7 * 1_000_003 + 9) % 1000]]
    assert hashed_ngrams(ids, 3, 10**15).tolist() == [[(3 * 1_000_003 + 5) * 1_000_003 + 7,
                                                       (5 * 1_000_003 + 7) * 1_000_003 + 9]]
    # 4- and 5-grams fold the running hash by a prime first, so that nothing overflows 64 bits
    p, fold = 1_000_003, HASH_FOLD
    assert hashed_ngrams(ids, 4, 10**15).tolist() == [[((((3 * p + 5) * p + 7) % fold) * p + 9) % 10**15]]
    big = torch.full((1, 5), 999_999)
    h5 = (((((999_999 * p + 999_999) * p + 999_999) % fold) * p + 999_999) % fold) * p + 999_999
    assert hashed_ngrams(big, 5, 2**62).tolist() == [[h5 % 2**62]] and h5 < 2**63


def test_ngram_model_sees_bigrams_only_inside_the_text():
    """A bigram that would straddle the end of the text (last word + padding) must not be embedded."""
    torch.manual_seed(0)
    model = NgramAttention(ngram(embed_size=8, buckets=31), 20, 2).eval()
    e, mask = model.embed(torch.tensor([[4, 5, 0, 0]]), torch.tensor([2]))
    gram = model.hashed[0].weight[hashed_ngrams(torch.tensor([[4, 5]]), 2, 31)[0, 0]]
    assert torch.allclose(e[0, 0], model.embedding.weight[4] + gram)
    assert torch.allclose(e[0, 1], model.embedding.weight[5])  # no (5, pad) bigram
    assert mask.tolist() == [[True, True, False, False]]


P = 1_000_003  # the n-gram hash's multiplier


def test_ngram_vocabulary_counts_texts_not_occurrences_and_keeps_the_most_frequent():
    docs = [[1, 2, 3], [1, 2, 4], [5, 1, 2, 1, 2], [7], [8, 9, 8, 9]]
    bigram = lambda a, b: a * P + b  # noqa: E731  (below HASH_FOLD: the key is the plain hash)
    trigram = lambda a, b, c: ((a * P + b) * P + c) % HASH_FOLD + HASH_FOLD  # noqa: E731  (order 3: one span up)
    # (1, 2) is in three texts (twice in the third: counted once); every other n-gram in one ((8, 9) twice)
    assert ngram_vocabulary(docs, 3, 2, 100).tolist() == [bigram(1, 2)]
    everything = sorted([bigram(1, 2), bigram(2, 3), bigram(2, 4), bigram(5, 1), bigram(2, 1),
                         bigram(8, 9), bigram(9, 8), trigram(1, 2, 3), trigram(1, 2, 4), trigram(5, 1, 2),
                         trigram(1, 2, 1), trigram(2, 1, 2), trigram(8, 9, 8), trigram(9, 8, 9)])
    assert ngram_vocabulary(docs, 3, 1, 100, batch=2).tolist() == everything  # batches merge the same
    # at most 2 per order: the most frequent, then the smallest keys
    assert ngram_vocabulary(docs, 3, 1, 2).tolist() == sorted([bigram(1, 2), bigram(2, 1),
                                                               *sorted(k for k in everything if k >= HASH_FOLD)[:2]])
    assert ngram_vocabulary([[1], [2]], 3, 1, 10).tolist() == []


def test_vocabulary_model_embeds_known_ngrams_and_nothing_for_the_others():
    torch.manual_seed(0)
    keys = ngram_vocabulary([[4, 5, 6], [4, 5, 9]], 3, 2, 100)  # only the bigram (4, 5) is in both
    model = NgramAttention(ngram(embed_size=8, ngrams=3), 20, 2, keys=keys).eval()
    assert model.grams.weight.shape == (2, 8) and not model.grams.weight[0].any()
    e, _ = model.embed(torch.tensor([[4, 5, 6, 4]]), torch.tensor([4]))
    assert torch.allclose(e[0, 0], model.embedding.weight[4] + model.grams.weight[1])  # (4, 5); (4, 5, 6) unknown
    assert torch.allclose(e[0, 1], model.embedding.weight[5])  # (5, 6), (5, 6, 4): unknown, zero
    assert torch.allclose(e[0, 3], model.embedding.weight[4])
    assert "keys" not in model.state_dict()  # the task's state keeps them (checkpoints hold them once)


def test_label_smoothing_of_the_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 2])
    task = ClassificationTask(OmegaConf.merge(OmegaConf.structured(ClassificationConfig),
                                              OmegaConf.from_dotlist(["model.label_smoothing=0.3"])))
    loss, n = task.loss(lambda ids, lengths: (logits, None), {"ids": None, "lengths": None, "label": y})
    logp = torch.log_softmax(logits, -1)  # the target: 1 - 0.3 on the gold class plus 0.3 spread over all three
    target = torch.full_like(logp, 0.1).scatter_add_(1, y.unsqueeze(1), torch.full((2, 1), 0.7))
    assert n.item() == 2 and loss.item() == pytest.approx(-(target * logp).sum().item(), rel=1e-6)  # summed
    one = torch.tensor([[1.5], [-0.5]])  # two classes, one logit: the target moves 0.15 towards 1/2
    loss, _ = task.loss(lambda ids, lengths: (one, None), {"ids": None, "lengths": None, "label": torch.tensor([1, 0])})
    p = torch.sigmoid(one[:, 0])
    t = torch.tensor([0.85, 0.15])
    assert loss.item() == pytest.approx(-(t * p.log() + (1 - t) * (1 - p).log()).sum().item(), rel=1e-6)


def test_split_sentences_by_hand():
    sep = 3
    ids = torch.tensor([[5, 6, sep, 7, sep, sep, 8, 9, 10, 11, 12, 0],
                        [sep, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0]])
    words, word_lengths, counts, where = split_sentences(ids, torch.tensor([11, 4]), sep, max_words=3)
    # doc 0: [5 6] [7] [8 9 10] [11 12] (the last cut at 3 words); doc 1: [4 4 4] (empty sentence skipped)
    assert counts.tolist() == [4, 1]
    assert word_lengths.tolist() == [[2, 1, 3, 2], [3, 0, 0, 0]]
    assert words[0].tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 10], [11, 12, 0]]
    assert words[1, 0].tolist() == [4, 4, 4] and (words[1, 1:] == 0).all()
    assert where[0, :, 0].tolist() == [0, 0, -1, 1, -1, -1, 2, 2, 2, 3, 3, -1]
    assert where[0, :, 1].tolist() == [0, 1, -1, 0, -1, -1, 0, 1, 2, 0, 1, -1]


@pytest.mark.parametrize("attention", ["additive", "multihead"])
def test_han_weights_are_word_times_sentence_attention(attention):
    """explain() reads the two levels from record(); forward() multiplies them on its own path: they agree
    (for several heads too, averaged)."""
    torch.manual_seed(0)
    model = HierarchicalAttention(han(embed_size=8, hidden_size=6, attention=attention), 30, 4, sep_id=3).eval()
    ids = torch.tensor([[5, 6, 3, 7, 8, 9, 3, 10]])
    out = model.explain(ids, torch.tensor([8]))
    s, w = out["sentence_weights"][0], out["word_weights"][0]
    assert torch.allclose(s.sum(), torch.tensor(1.0)) and torch.allclose(w.sum(-1), torch.ones(3))
    expected = [w[0, 0] * s[0], w[0, 1] * s[0], 0, w[1, 0] * s[1], w[1, 1] * s[1], w[1, 2] * s[1], 0, w[2, 0] * s[2]]
    assert torch.allclose(out["token_weights"][0], torch.stack([torch.as_tensor(x) for x in expected]).float())
    assert torch.allclose(out["token_weights"].sum(), torch.tensor(1.0))
    # each sentence is read alone: the sentence vectors do not depend on the other sentences' words
    other = model.explain(torch.tensor([[5, 6, 3, 11, 12, 13, 3, 10]]), torch.tensor([8]))
    assert torch.allclose(other["word_weights"][0, 0], w[0]) and torch.allclose(other["word_weights"][0, 2], w[2])


def test_auto_settings_follow_the_data_and_keep_what_the_user_set():
    cfg = OmegaConf.structured(ClassificationConfig)
    notes = auto.resolve(cfg, [10] * 96 + [5000] * 4, 100)
    assert cfg.data.max_len == 10 and cfg.model.arch in auto.ARCHS and cfg.trainer.lr > 0
    assert cfg.model.dropout == 0.5 and any("data.max_len=10" in n for n in notes)
    cfg = OmegaConf.structured(ClassificationConfig)
    cfg.data.max_len, cfg.model.arch, cfg.model.dropout, cfg.trainer.lr = 77, "han", 0.1, 0.5
    auto.resolve(cfg, [3000] * 100, 100_000)
    assert (cfg.data.max_len, cfg.model.arch, cfg.model.dropout, cfg.trainer.lr) == (77, "han", 0.1, 0.5)
    cfg = OmegaConf.structured(ClassificationConfig)
    auto.resolve(cfg, [3000] * 100, 100_000)
    assert cfg.data.max_len == auto.ARCH_DEFAULTS[cfg.model.arch]["max_len"] and cfg.model.dropout == 0.2


def test_han_run_reports_document_level_attention(tmp_path):
    words = {"pos": ["great", "lovely", "superb", "moving"], "neg": ["awful", "boring", "dull", "weak"]}
    lines = [f"We saw it on a Sunday. The film was {words[lab][i % 4]}. It was long.\t{lab}\n"
             for i in range(8) for lab in ("pos", "neg")]
    for split in ("train", "valid", "test"):
        write(tmp_path / "data" / f"{split}.tsv", "".join(lines))
    cfg = small_cfg(tmp_path / "data", "model.arch=han", "model.ensemble=1", "trainer.max_epochs=30")
    metrics = run_training(cfg, tmp_path / "run", ClassificationTask)
    assert metrics["test.accuracy"] == 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Document-level attention" in report and "3 sentences, the three most attended" in report
    # the sentence that decides ("The film was ...") gets the most sentence-level attention in each document
    lines = report.splitlines()
    firsts = [lines[i + 2] for i, line in enumerate(lines) if "the three most attended" in line]
    assert firsts and all(f.startswith("- sentence 2 (weight") for f in firsts), firsts
    assert "border-left" in (tmp_path / "run" / "attention_documents.html").read_text()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_transformer_gives_the_same_logits_in_training_without_weights(pooling):
    """Training skips the attention weights (fused kernel); the logits must not change, and the
    placeholder token weights are uniform over the text."""
    torch.manual_seed(0)
    model = TransformerClassifier(transformer(pooling=pooling, layers=2), 50, 3)
    ids, lengths = torch.randint(4, 50, (3, 7)), torch.tensor([7, 4, 2])
    train_logits, train_w = model.train()(ids, lengths)
    eval_logits, eval_w = model.eval()(ids, lengths)
    assert torch.allclose(train_logits, eval_logits, atol=1e-5)
    assert torch.allclose(train_w[2], torch.tensor([0.5, 0.5, 0, 0, 0, 0, 0]))
    assert (eval_w[2, 2:] == 0).all()  # cls: what [CLS] gave the text (its own share excluded)
    if pooling == "mean":
        assert torch.allclose(eval_w.sum(-1), torch.ones(3), atol=1e-5)


def noisy_reviews(root, seed=3):
    """Word-spaced two-class texts with label noise: a baseline whose C matters, accuracy below 1."""
    import random

    rng = random.Random(seed)
    cue = {"pos": ["great", "lovely", "superb", "moving", "fine"], "neg": ["awful", "boring", "dull", "weak", "poor"]}
    filler = ["the", "film", "plot", "actor", "scene", "was", "and", "quite", "very", "story"]
    for split, n in (("train", 160), ("valid", 60), ("test", 60)):
        rows = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = rng.sample(filler, 5) + [rng.choice(cue[label if rng.random() > 0.25 else
                                                            ("neg" if label == "pos" else "pos")])]
            rng.shuffle(words)
            rows.append(f"{' '.join(words)}\t{label}\n")
        write(root / f"{split}.tsv", "".join(rows))
    return root


def test_report_baseline_chooses_c_on_valid_and_provenance_records_the_data(tmp_path):
    """The report's TF-IDF + LR is scikit-learn's, its C the best of the grid on valid (the smaller on a
    tie), scored on valid and test; provenance.json names the command, the data files' SHA-256 and torch;
    config.yaml holds the values "auto" became."""
    import hashlib
    import json

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = noisy_reviews(tmp_path / "data")
    argv = ["task=classification", f"data.path={data}", "trainer.max_epochs=0", "trainer.max_steps=2",
            "trainer.max_minutes=0", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    r = run_cli(*argv)
    assert r.returncode == 0, r.stderr[-2000:]
    split = {s: [line.rstrip("\n").split("\t") for line in open(data / f"{s}.tsv")] for s in ("train", "valid", "test")}
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x = vec.fit_transform([t for t, _ in split["train"]])
    fits = {c: LogisticRegression(C=c, max_iter=2000, random_state=1234).fit(x, [y for _, y in split["train"]])
            for c in (0.25, 1.0, 4.0, 16.0, 64.0)}

    def accuracy(c, s):
        return float((fits[c].predict(vec.transform([t for t, _ in split[s]])) == [y for _, y in split[s]]).mean())

    best = max(fits, key=lambda c: (accuracy(c, "valid"), -c))
    base = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert base["C"] == best and base["features"] == "word"
    assert base["valid.accuracy"] == pytest.approx(accuracy(best, "valid"))
    assert base["test.accuracy"] == pytest.approx(accuracy(best, "test"))
    assert base["valid_accuracy_by_C"] == pytest.approx({f"{c:g}": accuracy(c, "valid") for c in fits})
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"C={best:g} (chosen on valid) | {accuracy(best, 'test'):.4f}" in report
    # two updates: the attention model alone is behind the baseline on valid, and the report says so plainly
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    own = metrics["valid.model_alone.macro_f1"]
    assert base["valid.macro_f1"] > own and 0 <= metrics["valid.tfidf_share"] <= 1
    assert ("**On valid, TF-IDF + logistic regression is ahead of the attention model alone** (macro-F1 "
            f"{base['valid.macro_f1']:.4f} vs {own:.4f}): the system above is the vote") in report

    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    from importlib.metadata import version

    # config.yaml is the config the model was built from: no "auto" / 0 left, equal to the checkpoint's
    saved = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / "config.yaml"))
    assert saved["model"]["arch"] in auto.ARCHS and saved["tokenizer"]["kind"] in ("word", "char")
    assert saved["trainer"]["lr"] > 0 and saved["trainer"]["batch_size"] > 0 and saved["data"]["max_len"] > 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["config"] == saved

    assert prov["command"][-len(argv):] == argv and prov["software"]["torch"] == version("torch")
    for s in ("train", "valid", "test"):
        digest = hashlib.sha256((data / f"{s}.tsv").read_bytes()).hexdigest()
        assert prov["data"][str((data / f"{s}.tsv").resolve())] == f"sha256:{digest}"


def test_trivial_baseline_is_the_majority_class_by_hand(tmp_path):
    """Train 3:1 pos; test 6 pos, 2 neg: always 'pos' scores accuracy 6/8 and macro-F1 (2*0.75/1.75 + 0)/2."""
    rows = lambda pos, neg: "".join(["good film\tpos\n"] * pos + ["bad film\tneg\n"] * neg)  # noqa: E731
    write(tmp_path / "train.tsv", rows(9, 3))
    write(tmp_path / "valid.tsv", rows(2, 2))
    write(tmp_path / "test.tsv", rows(6, 2))
    task = ClassificationTask(small_cfg(tmp_path))
    task.load_data()
    assert task.trivial_baseline("test") == pytest.approx({"accuracy": 0.75, "macro_f1": (2 * 0.75 / 1.75) / 2})


def test_evaluation_loss_is_the_trainers_mean_loss_from_one_pass(tmp_path, monkeypatch):
    """evaluates_loss: valid.loss comes from evaluate()'s own pass and equals mean_loss (the trainer's
    separate pass over task.loss), with and without the TF-IDF companion; task.loss is not called."""
    import contextlib

    from attnapps.training.evaluation import evaluate_split, mean_loss
    from tests.test_scripts_smoke import reviews

    data = reviews(tmp_path / "data")
    for companion in ("off", "on"):
        cfg = OmegaConf.merge(OmegaConf.structured(ClassificationConfig), OmegaConf.from_dotlist([
            f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}", "model.arch=ngram_attention",
            "model.embed_size=8", "model.ensemble=2"]), {"model": {"tfidf": companion}})
        task = ClassificationTask(cfg)
        task.load_data()
        torch.manual_seed(0)
        model = task.build_model()
        assert (type(model).__name__ == "WithTfidf") == (companion == "on")  # (of an ensemble of 2)
        reference = mean_loss(task, model, "valid", contextlib.nullcontext)
        calls = []
        monkeypatch.setattr(ClassificationTask, "loss", lambda self, m, b: calls.append(1))
        metrics, _ = evaluate_split(task, model, "valid", False, contextlib.nullcontext)
        monkeypatch.undo()
        assert calls == [] and metrics["loss"] == pytest.approx(reference, rel=1e-6)
        assert 0.3 < metrics["loss"] < 1.5  # an untrained two-class model: about ln 2
