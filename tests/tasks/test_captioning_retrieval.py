"""Nearest-neighbour captioning (the report's baseline and the decoder's retrieved memory): neighbours,
the consensus caption, known CIDEr-D similarities, and a run with the memory end to end."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import write_outputs
from attnapps.training import Trainer
from attnapps_tasks.captioning.features import load_pixels
from attnapps_tasks.captioning.retrieval import (ConsensusScorer, global_features, knn_captions, neighbours,
                                        retrieval_baseline)
from attnapps_tasks.captioning.task import CaptioningConfig, CaptioningTask
from tests.conftest import run_cli


def test_global_features_are_unit_mean_regions_and_neighbours_skip_themselves():
    store = torch.tensor([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 0.8]]])
    g = global_features(store.half())
    assert torch.allclose(g[0], torch.tensor([1.0, 0.0])) and torch.allclose(g.norm(dim=-1), torch.ones(3))
    assert neighbours(g, g, 1).squeeze(1).tolist() == [0, 1, 2]  # without exclusion: itself
    nb = neighbours(g, g, 2, exclude=torch.arange(3))
    assert nb[:, 0].tolist() == [2, 2, 0] and (nb != torch.arange(3).unsqueeze(1)).all()


def test_consensus_similarity_known_values():
    train = [[["a", "red", "car", "parked"]], [["a", "blue", "sky"]], [["a", "dog"]], [["green", "grass"]]]
    s = ConsensusScorer(train)
    # identical captions: cosine 1 for each n (1..4) that has a gram with non-zero idf, no length penalty
    assert s.similarity(["red", "car", "parked", "here"], ["red", "car", "parked", "here"]) == pytest.approx(10.0)
    assert s.similarity(["blue", "sky"], ["green", "grass"]) == 0.0
    # "a" is in 3 of 4 training images: idf log(4/3); one shared unigram of two, length 2 vs 2
    a, b = ["a", "dog"], ["a", "cat"]
    idf_a, idf_dog, idf_cat = math.log(4 / 3), math.log(4 / 1), math.log(4 / 1)
    cos1 = idf_a ** 2 / (math.hypot(idf_a, idf_dog) * math.hypot(idf_a, idf_cat))
    assert s.similarity(a, b) == pytest.approx(10 * cos1 / 4)
    # the Gaussian length penalty (sigma 6): same n-grams, lengths 2 vs 8
    long = ["a", "dog"] + ["x"] * 6
    assert s.similarity(a, long) < s.similarity(a, a) * math.exp(-36 / 72) + 1e-9


def test_knn_consensus_picks_the_caption_the_neighbours_agree_on():
    train_caps = [[["a", "red", "car"]], [["a", "red", "car", "on", "a", "road"]], [["blue", "sky"]],
                  [["a", "red", "car", "parked"]]]
    s = ConsensusScorer(train_caps)
    nb = torch.tensor([[2, 0, 1, 3]])
    assert knn_captions(nb, train_caps, 1, s) == [["blue", "sky"]]  # 1-NN: the nearest image's caption
    assert knn_captions(nb, train_caps, 4, s) == [["a", "red", "car"]]  # what three of four agree on


def test_retrieval_baseline_chooses_k_on_valid_and_scores_test():
    # four training images in two tight clusters; valid and test sit in the clusters
    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=-1)
    caps = [[["a", "cat"]], [["a", "cat", "sleeping"]], [["a", "dog"]], [["a", "dog", "running"]]]
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=-1)
    refs = [[["a", "cat"]], [["a", "dog"]]]
    out = retrieval_baseline((keys, caps), (q, refs), (q, refs), ks=(1, 2, 4))
    assert out["k"] in (1, 2) and out["valid_by_k"][4] <= out["valid_by_k"][out["k"]]
    assert out["test_captions"] == [["a", "cat"], ["a", "dog"]] and out["test"]["bleu1"] == pytest.approx(1.0)


def test_transparent_pixels_are_laid_over_white(tmp_path):
    from PIL import Image

    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    im.putpixel((0, 0), (255, 0, 0, 255))
    im.save(tmp_path / "icon.png")
    px = load_pixels(tmp_path / "icon.png", 4)
    assert px[:, 3, 3].tolist() == [255, 255, 255] and px[:, 0, 0].tolist() == [255, 0, 0]


# ---------------------------------------------------------------------------------------- end to end
def colour_run(root, *overrides):
    """Eight flat-colour images with one caption each, a frozen (random) resnet18, the retrieved memory on.
    Valid and test images are copies of training images, so the 1-NN baseline is exact on them."""
    from PIL import Image

    colours = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20),
               "black": (0, 0, 0), "white": (255, 255, 255), "purple": (140, 20, 160), "orange": (250, 140, 0)}
    images = []
    (root / "data" / "images").mkdir(parents=True)
    for i, (name, rgb) in enumerate(colours.items()):
        for split in ("train", "val", "test") if i < 4 else ("train",):
            file = f"{name}_{split}.png"
            Image.new("RGB", (32, 32), rgb).save(root / "data" / "images" / file)
            images.append({"filename": file, "split": split, "sentences": [{"raw": f"a {name} square"}]})
    (root / "data" / "dataset.json").write_text(json.dumps({"images": images}))
    cfg = OmegaConf.merge(OmegaConf.structured(CaptioningConfig), OmegaConf.from_dotlist([
        f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}", "encoder.name=resnet18",
        "encoder.image_size=64", "model.hidden_size=32", "model.embed_size=16", "model.retrieval_k=2",
        "trainer.max_minutes=0", "trainer.max_epochs=12", "trainer.batch_size=4", "trainer.progress=false",
        "report.figures=1", "decode.beam=2", *overrides]))
    trainer = Trainer(CaptioningTask, cfg, root / "run")
    result = trainer.run()
    write_outputs(root / "run", cfg, result)
    return root, result.metrics, trainer.task


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    # greedy fixed: retrieval, exact on these copies, would win the auto choice (tested below)
    return colour_run(tmp_path_factory.mktemp("mem"), "decode.strategy=greedy")


@pytest.mark.slow
def test_memory_run_reports_the_retrieval_baseline_and_the_memory_attention(memory_run):
    root, metrics, task = memory_run
    base = json.loads((root / "run" / "baseline.json").read_text())
    assert base["method"] == "knn_consensus" and base["nn1.test.bleu1"] == pytest.approx(1.0)
    assert {"test.cider", "test.bleu4", "valid.cider", "k"} <= set(base)
    report = (root / "run" / "report.md").read_text()
    assert "k-NN consensus" in report and "1-NN" in report and "test decoding: greedy" in report
    assert "plots/memory_0.png" in report and (root / "run" / "plots" / "memory_0.png").is_file()
    # a training image's memory never holds its own caption; a test copy's nearest image is its original
    train_ids = [task.datasets["train"][i][1][0] for i in range(len(task.datasets["train"]))]
    for i, (_, caps, (memory, ranks)) in enumerate(task.datasets["train"]):
        first = memory[: memory.index(3)]
        assert first != caps[0] and first in train_ids and ranks[0] == 1
    for _, caps, (memory, _) in task.datasets["test"]:
        assert memory[: memory.index(3)] == caps[0]


@pytest.mark.slow
def test_predict_retrieves_from_the_saved_index(memory_run, tmp_path):
    root, _, task = memory_run
    image = root / "data" / "images" / "blue_test.png"
    r = run_cli("task=captioning", f"run={root / 'run'}", f"image={image}", "beam=1", module="attnapps.predict")
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words and all(w in task.vocab.stoi for w in words)
    # the saved index gives the same memory for a test image as training did
    model = task.build_model()
    model.load_state_dict(torch.load(root / "run" / "checkpoints" / "best.pt", weights_only=True)["model"])
    i = [it.name for _, it in task.items["test"]].index("blue_test.png")
    memory = task.predict_memory(model, load_pixels(image, 64).unsqueeze(0))
    assert memory["memory"][0].tolist() == task.datasets["test"][i][2][0]


@pytest.mark.slow
def test_retrieval_captions_test_and_new_images_when_it_wins_on_valid(tmp_path):
    """One update: the decoder has learnt nothing, while the k-NN consensus is exact on these copies, so the
    auto strategy picks ``knn`` on valid; test, the report and ``attnapps.predict`` then caption by retrieval."""
    root, metrics, task = colour_run(tmp_path, "trainer.max_epochs=0", "trainer.max_steps=1")
    scores = task.strategy.scores
    assert set(scores) == {"greedy", "beam", "rerank", "knn"}  # retrieval is a candidate beside the decodings
    assert task.strategy.name == "knn" and scores["knn"] > max(scores["greedy"], scores["beam"], scores["rerank"])
    base = json.loads((root / "run" / "baseline.json").read_text())
    assert metrics["test.cider"] == pytest.approx(base["test.cider"]) and metrics["test.bleu1"] == pytest.approx(1.0)
    lines = (root / "run" / "test_captions.txt").read_text().splitlines()
    assert sorted(line.split("\t")[1] for line in lines) == ["a blue square", "a green square", "a red square",
                                                            "a yellow square"]
    report = (root / "run" / "report.md").read_text()
    assert "test decoding: knn (no decoding: the k-NN consensus caption" in report and "chosen on valid by CIDEr-D" in report
    best = torch.load(root / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["task_state"]["knn_k"] == base["k"]
    r = run_cli("task=captioning", f"run={root / 'run'}", f"image={root / 'data' / 'images' / 'blue_test.png'}",
                module="attnapps.predict")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "a blue square"


def test_knn_strategy_needs_the_retrieved_memory():
    from attnapps.errors import ConfigError

    cfg = OmegaConf.merge(OmegaConf.structured(CaptioningConfig), OmegaConf.from_dotlist(["decode.strategy=knn"]))
    with pytest.raises(ConfigError, match="decode.strategy=knn: captions by retrieval need the retrieved memory"):
        CaptioningTask.check_config(cfg)  # the default encoder (small_cnn) trains: no fixed index
    ok = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["encoder.name=resnet18"]))
    CaptioningTask.check_config(ok)
