"""``format=onnx``: each task's graphs run in ONNX Runtime, match PyTorch and decode as predict does."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from attnapps.errors import AttnappsError
from attnapps.export.__main__ import export
from attnapps.export.graphs import MANIFEST, TOLERANCE
from attnapps.export.ops import binary_search
from attnapps.export.runtime import OnnxModel
from attnapps.predict import load_run
from attnapps.predict import main as predict

pytest.importorskip("onnxruntime")
GRAPHS = {"translation": {"encoder", "decoder"}, "classification": {"model"}, "captioning": {"encoder", "decoder"},
          "generation": {"prefill", "step"}}


@pytest.fixture(scope="module")
def exported(tiny_runs, tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            run, _ = tiny_runs[name]
            out, files = export(run, "onnx", tmp_path_factory.mktemp(f"onnx_{name}"))
            cache[name] = run, out, files
        return cache[name]
    return get


def predicted(args) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert predict(args) == 0
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GRAPHS))
def test_graphs_match_pytorch(exported, name):
    """The export checks every graph against PyTorch on a batch of other sizes than it traced (decoder
    steps included) and keeps the largest gap: within the stated tolerance, and no pickle in the folder."""
    _, out, files = exported(name)
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["graphs"]) == GRAPHS[name]
    assert 0 <= manifest["max_abs_diff"] < 50 * TOLERANCE
    assert {f.suffix for f in files} <= {".onnx", ".json", ".safetensors"}
    assert not any(out.glob("*.pt"))


@pytest.mark.slow
def test_translation_greedy_and_beam_equal_predict(exported, tmp_path):
    run, out, _ = exported("translation")
    (tmp_path / "in.txt").write_text("abcde\nqrstuvw\nzz\n")
    for options in (["beam=1"], ["beam=3", "hybrid=false", "channel=0"]):  # batched beam search on the graphs
        answers = [predicted([f"run={src}", f"input={tmp_path / 'in.txt'}", *options]) for src in (run, out)]
        assert answers[0] == answers[1] and answers[0].strip(), options


@pytest.mark.slow
def test_onnx_forward_and_steps_equal_torch(exported):
    """The runtime adapter under the same contract: a classifier's forward, a language model's steps."""
    run, out, _ = exported("classification")
    _, model = load_run(run)
    onnx_model = load_run(out)[1]
    assert isinstance(onnx_model, OnnxModel)
    ids, lengths = torch.tensor([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0]]), torch.tensor([4, 3])
    with torch.no_grad():
        logits, weights = model(ids, lengths)
    logits_rt, weights_rt = onnx_model(ids, lengths)
    assert torch.allclose(logits_rt, logits, atol=1e-4) and torch.allclose(weights_rt, weights, atol=1e-5)
    assert torch.allclose(weights_rt.sum(-1), torch.ones(2), atol=1e-5)
    run, out, _ = exported("generation")
    task, model = load_run(run)
    onnx_model = load_run(out)[1]
    prompt = task.encode("the cat ")
    from attnapps.decoding import sample_tokens

    for temperature in (0.0, 0.9):  # the same seeded draws from the same distributions
        assert sample_tokens(onnx_model, prompt, 30, temperature, seed=3) == sample_tokens(model, prompt, 30,
                                                                                          temperature, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["classification", "generation", "captioning"])
def test_predict_from_onnx_equals_run(exported, tiny_runs, tmp_path, name):
    run, out, _ = exported(name)
    if name == "classification":
        (tmp_path / "in.txt").write_text("the film was dull\nsuperb and lovely\n")
        options = [f"input={tmp_path / 'in.txt'}"]
    elif name == "generation":
        options = ["prompt=the dog ", "temperature=0", "max_new_tokens=20"]
    else:
        images = sorted((run.parent / "data" / "images").glob("*.png"))[:3]
        options = ["image=" + ",".join(map(str, images)), "beam=1"]
    answers = [predicted([f"run={src}", *options]) for src in (run, out)]
    assert answers[0] == answers[1] and answers[0].strip()


def test_onnx_translation_decodes_without_the_hybrid_and_says_so(exported, tmp_path, capsys):
    run, out, _ = exported("translation")
    (tmp_path / "in.txt").write_text("abcd\nxyz\n")
    onnx = predicted([f"run={out}", f"input={tmp_path / 'in.txt'}", "beam=2", "hybrid=true"])
    assert "note: an ONNX export decodes with the model's own beam" in capsys.readouterr().err
    assert onnx == predicted([f"run={run}", f"input={tmp_path / 'in.txt'}", "beam=2", "hybrid=false"])


def test_missing_graph_is_named(exported, tmp_path):
    import shutil

    _, out, _ = exported("generation")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "step.onnx").unlink()
    with pytest.raises(AttnappsError, match=r"step.onnx: missing \(the manifest onnx.json names it\)"):
        load_run(broken)


def test_binary_search_equals_searchsorted():
    g = torch.Generator().manual_seed(1)
    for n in (0, 1, 2, 7, 1000):
        keys = torch.randint(-50, 10**6, (n,), generator=g).sort().values
        query = torch.cat([keys, torch.randint(-100, 10**6 + 100, (40,), generator=g)]).view(1, -1)  # (1, n + 40)
        assert torch.equal(binary_search(keys, query), torch.searchsorted(keys, query)), n


def test_dense_tfidf_features_equal_sparse():
    from attnapps_tasks.classification.tfidf import dense_features, features

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 30, (3, 12), generator=g)
    lengths = torch.tensor([12, 7, 3])
    ids = ids.masked_fill(torch.arange(12) >= lengths[:, None], 0)
    from attnapps_tasks.classification.model import ngram_keys

    vocab = torch.unique(ngram_keys(ids, lengths, 2, lowest=1))[::2].contiguous()  # half the n-grams known
    idf = torch.rand(len(vocab), generator=g) + 1
    assert torch.allclose(dense_features(ids, lengths, 2, vocab, idf), features(ids, lengths, 2, vocab, idf).to_dense(),
                          atol=1e-6)


@pytest.mark.slow
def test_served_onnx_exports_answer_as_the_runs_do(exported, tiny_runs):
    """``attnapps.serve run=RUN/export/onnx``: the same API and answers as the run (greedy), no attention views."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from attnapps.serve import create_app, load_runs

    names = ["translation", "classification", "captioning", "generation"]
    runs = load_runs([str(exported(n)[0]) for n in names] + [str(exported(n)[1]) for n in names], batching="lock")
    try:
        client = TestClient(create_app(runs))
        ids = list(runs)  # the runs, then their exports, in the order given
        assert {r["id"] for r in client.get("/v1/runs").json()["runs"]} == set(ids)
        image = sorted((exported("captioning")[0].parent / "data" / "images").glob("*.png"))[0].read_bytes()
        for k, n in enumerate(names):
            answers = []
            for run_id in (ids[k], ids[k + 4]):
                if n == "captioning":
                    r = client.post(f"/v1/captioning/predict?run={run_id}", files={"image": ("x.png", image, "image/png")},
                                    data={"beam": "1"})
                else:
                    options = {"translation": {"beam": 1}, "classification": {},
                               "generation": {"temperature": 0, "max_new_tokens": 12}}[n]
                    r = client.post(f"/v1/{n}/predict?run={run_id}", json={"text": "abcde the cat", "options": options})
                assert r.status_code == 200, (n, run_id, r.text)
                answers.append(r.json())
            assert answers[0]["outputs"] == answers[1]["outputs"], n
            assert all(not ex["views"] for ex in answers[1]["examples"]) or n == "classification"
        r = client.post(f"/v1/translation/predict?run={ids[4]}", json={"text": "abc", "options": {"beam": 99}})
        assert r.status_code == 422  # the same caps and errors as the run's
    finally:
        for r in runs.values():
            r.close()
