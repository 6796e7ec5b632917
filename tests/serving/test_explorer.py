"""report.html: the explorer's data format, its page (self-contained, size-bounded), and what each task
puts in it -- checked against the models' own attention."""

import json
import re

import pytest
import torch

from attnapps.explorer import example, fit_budget, learning_curves, permille, view, write_report_html


def page_data(html: str) -> dict:
    return json.loads(re.search(r"<script type='application/json' id='data'>(.*?)</script>", html, re.S).group(1))


# ------------------------------------------------------------------------------------ the format
def test_permille_and_view_shapes():
    assert permille(torch.tensor([[0.1234, 0.8766]])) == [[123, 877]]
    v = view("v", "q", "k", torch.full((2, 3), 0.5))  # one head added
    assert v["heads"] == [[[500] * 3] * 2]
    ex = example({"q": ["a", "b"], "k": ["x", "y", "z"]}, [v])
    assert ex["views"][0]["name"] == "v"
    with pytest.raises(ValueError, match="view 'w'.*\\(2, 2\\)"):
        example({"q": ["a", "b"], "k": ["x", "y"]}, [view("w", "q", "k", torch.zeros(2, 3))])
    img = example({"q": ["a"]}, [view("i", "q", "image", torch.zeros(1, 6))], image={"src": "", "grid": [2, 3]})
    assert img["image"]["grid"] == [2, 3]


def test_budget_keeps_a_prefix_and_at_least_one():
    exs = [{"x": "a" * 100} for _ in range(10)]
    kept, dropped = fit_budget(exs, 350)
    assert len(kept) == 3 and dropped == 7
    kept, dropped = fit_budget(exs, 10)
    assert len(kept) == 1 and dropped == 9


def test_page_is_self_contained_and_escapes_the_data(tmp_path):
    nasty = "</script><script>alert(1)</script>"
    path, dropped = write_report_html(tmp_path, nasty, {"test.x": 1.5}, {}, [
        example({"s": [nasty]}, [view("v", "s", "s", torch.ones(1, 1))])], max_mb=1)
    html = path.read_text()
    assert dropped == 0 and page_data(html)["title"] == nasty
    assert html.count("<script") == 2  # the data and the explorer; nothing injected
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|@import|url\(", html)  # nothing fetched
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


def test_learning_curves_from_the_log(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,epoch,elapsed_s,key,value\n" + "".join(
        f"{s},0,0,train.loss,{10 - s}\n" for s in range(1, 6)) + "5,0,0,valid.bleu,3.5\n5,0,0,train.lr,0.1\n")
    c = learning_curves(log, "bleu")
    assert c == {"train.loss": [[s, 10 - s] for s in range(1, 6)], "valid.bleu": [[5, 3.5]]}


# ------------------------------------------------------------------------------------ the four tasks
def explorer_of(run_dir):
    assert "[`report.html`](report.html)" in (run_dir / "report.md").read_text()
    return page_data((run_dir / "report.html").read_text())


def check_views(ex):
    for v in ex["views"]:
        rows = len(ex["seqs"][v["q"]])
        cols = ex["image"]["grid"][0] * ex["image"]["grid"][1] if v["k"] == "image" else len(ex["seqs"][v["k"]])
        assert all(len(h) == rows and all(len(r) == cols and all(0 <= x <= 1000 for x in r) for r in h)
                   for h in v["heads"]), v["name"]


@pytest.mark.slow
def test_translation_explorer_has_every_layer_and_head_and_matches_decoding(tiny_runs):
    from attnapps.predict import load_run, predict_options

    run_dir, metrics = tiny_runs["translation"]
    data = explorer_of(run_dir)
    assert len(data["examples"]) == 16 and "valid.bleu" in data["curves"] and data["metrics"]["test.bleu"] == metrics["test.bleu"]
    ex = data["examples"][0]
    check_views(ex)
    names = [v["name"] for v in ex["views"]]
    assert names[:2] == ["decoder · layer 1 · cross_attn", "decoder · layer 2 · cross_attn"]
    assert {"decoder · layer 2 · self_attn", "encoder · layer 1 · attn"} <= set(names)
    assert all(len(v["heads"]) == 2 for v in ex["views"])
    assert ex["refs"] and ex["nbest"] and ex["text"] == ex["nbest"][0][0]
    # the recorded cross-attention of the last layer, averaged over heads, is what greedy decoding saw
    task, model = load_run(run_dir)
    src = "a b c d e"
    (out,) = task.infer(model, [src], predict_options(task, {"beam": 1, "alpha": 0.0}))  # as the server asks
    hyp = task.translate(model, [task.src_tok.encode(src)], beam=1)
    last = next(v for v in out["views"] if v["name"] == "decoder · layer 2 · cross_attn")
    recorded = torch.tensor(last["heads"], dtype=torch.float32).mean(0) / 1000  # (output, source)
    n = len(hyp.tokens[0]) + 1  # with </s>
    assert recorded.shape == (n, len(out["seqs"]["source"]))
    torch.testing.assert_close(recorded[: n - 1], hyp.attention[0].float(), atol=2e-3, rtol=0)
    assert out["text"] == "e d c b a"  # it learnt to reverse


@pytest.mark.slow
def test_classification_explorer_labels_probabilities_and_hops(tiny_runs):
    from attnapps.predict import load_run

    run_dir, _ = tiny_runs["classification"]
    data = explorer_of(run_dir)
    exs = data["examples"]
    assert len(exs) == 16
    for ex in exs:
        check_views(ex)
        assert set(ex["label"]) == {"gold", "pred", "probs"} and abs(sum(ex["label"]["probs"].values()) - 1) < 1e-3
        assert ex["views"][0]["q"] == "decision" and sum(ex["views"][0]["heads"][0][0]) == pytest.approx(1000, abs=20)
        hops = next(v for v in ex["views"] if v["q"] == "hops")
        assert len(hops["heads"][0]) == 2  # model.hops=2
    task, model = load_run(run_dir)
    (out,) = task.infer(model, ["the film was superb and moving overall"], None)
    ids = task.encode("the film was superb and moving overall")
    _, w = model(torch.tensor([ids]), torch.tensor([len(ids)]))
    assert out["views"][0]["heads"][0][0] == permille(w[0])
    assert out["label"]["pred"] == "pos" == out["text"]


@pytest.mark.slow
def test_captioning_explorer_maps_each_word_over_the_image_grid(tiny_runs):
    run_dir, _ = tiny_runs["captioning"]
    exs = explorer_of(run_dir)["examples"]
    assert len(exs) == 6  # the whole test split
    for ex in exs:
        check_views(ex)
        assert ex["image"]["src"].startswith("data:image/jpeg;base64,") and ex["refs"]
        assert ex["views"][0]["k"] == "image" and len(ex["views"][0]["heads"][0]) == len(ex["text"].split())


@pytest.mark.slow
def test_generation_explorer_is_causal_per_layer_and_head(tiny_runs):
    run_dir, _ = tiny_runs["generation"]
    exs = explorer_of(run_dir)["examples"]
    assert exs
    ex = exs[0]
    check_views(ex)
    assert [v["name"] for v in ex["views"]] == ["layer 1", "layer 2"] and all(len(v["heads"]) == 2 for v in ex["views"])
    w = torch.tensor(ex["views"][1]["heads"])  # (heads, len, len)
    assert torch.all(w.triu(1) == 0) and torch.allclose(w.sum(-1).float(), torch.full(w.shape[:2], 1000.0), atol=w.size(-1))


@pytest.mark.slow
def test_size_budget_drops_examples_and_says_so(tiny_runs, tmp_path):
    run_dir, metrics = tiny_runs["translation"]
    exs = explorer_of(run_dir)["examples"]
    one = len(json.dumps(exs[0], separators=(",", ":")))
    path, dropped = write_report_html(tmp_path, "t", metrics, {}, exs, max_mb=2.5 * one / 1e6)
    data = page_data(path.read_text())
    assert dropped == len(exs) - len(data["examples"]) > 0 and "left out" in data["notes"][0]


def test_explorer_examples_zero_writes_no_page(tmp_path, dummy_cfg):
    import tests.dummy_task as dummy
    from attnapps.run import train

    train(dummy_cfg("trainer.max_steps=3", "trainer.progress=false", "explorer.examples=0"), tmp_path / "run",
          dummy.DummyTask)
    assert (tmp_path / "run" / "report.md").is_file() and not (tmp_path / "run" / "report.html").exists()
    assert "report.html" not in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.slow
def test_captioning_transformer_has_every_layer_and_head_matching_decoding(tiny_runs, tmp_path):
    from tests.tiny_runs import _run
    from attnapps_tasks.captioning.task import CaptioningTask

    root = tiny_runs["captioning"][0].parent
    run_dir, _ = _run(CaptioningTask, tmp_path, f"data.path={root / 'data'}", f"data.cache_dir={root / 'cache'}",
                      "data.min_freq=1", "model.arch=transformer", "model.hidden_size=32", "model.layers=2",
                      "model.heads=2", "model.ff_size=64", "trainer.max_epochs=0", "trainer.max_steps=10",
                      "trainer.batch_size=6", "decode.beam=1", "diag.examples=0")
    captioned = [ex for ex in explorer_of(run_dir)["examples"] if ex["text"]]
    assert captioned
    for ex in captioned:
        check_views(ex)
        names = [v["name"] for v in ex["views"]]
        assert names == ["attention over the image's regions"] + [
            f"decoder · layer {n} · {m}" for n in (1, 2) for m in ("self_attn", "cross_attn")]
        decoding = torch.tensor(ex["views"][0]["heads"][0], dtype=torch.float32)  # the model's own (head average)
        recorded = torch.tensor(ex["views"][-1]["heads"], dtype=torch.float32).mean(0)  # last layer, heads averaged
        assert torch.allclose(decoding, recorded, atol=1.0)  # per mille rounding
        self_w = torch.tensor(ex["views"][1]["heads"])
        assert torch.all(self_w.triu(1) == 0) and len(ex["views"][1]["heads"]) == 2
