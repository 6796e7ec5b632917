"""``format=safetensors``: the exported folder loads without pickle and predicts as the run does."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from attnapps.errors import AttnappsError
from attnapps.export.__main__ import export, main
from attnapps.export.weights import META, from_json, read_export, to_json
from attnapps.predict import load_run
from attnapps.training.checkpoint import load_checkpoint

TASKS = ["translation", "classification", "captioning", "generation"]


def same(a, b) -> bool:
    """Deep equality over the nests a task state holds (tensors by value, dtype and shape)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape \
            and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN == NaN here


def test_json_codec_round_trip():
    shared = torch.arange(6, dtype=torch.float16)
    state = {"tok": {"model": torch.tensor([1, 2, 255], dtype=torch.uint8), "pieces": ["<s>", "ä", "中"]},
             "pair": (1, "two", 3.5), "raw": b"\x00\xffbytes", "by_id": {3: "c", 1: "a"},
             "tricky": {"$tensor": "not a tensor"}, "views": [shared, shared[2:]], "none": None,
             "flags": [True, False], "nan": float("nan"), "mask": torch.tensor([[True, False]])}
    tensors: dict = {}
    encoded = json.loads(json.dumps(to_json(state, tensors)))  # through JSON text
    assert set(tensors) == {"task_state.tok.model", "task_state.views.0", "task_state.views.1", "task_state.mask"}
    back = from_json(encoded, tensors)
    assert same(back, state)
    assert back["views"][1].tolist() == [2, 3, 4, 5]


def test_codec_rejects_objects_json_cannot_hold():
    with pytest.raises(TypeError, match="task_state.x: cannot export a set"):
        to_json({"x": {1, 2}}, {})


@pytest.mark.parametrize("name", TASKS)
def test_export_loads_without_pickle(tiny_runs, tmp_path, monkeypatch, name):
    run, _ = tiny_runs[name]
    out, files = export(run, "safetensors", tmp_path / "out")
    assert {f.name for f in files} >= {"model.safetensors", META}
    saved = load_checkpoint(run / "checkpoints" / "best.pt")

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")
    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    state = read_export(out)
    assert state["task"] == name and state["step"] == saved["step"]
    assert same(dict(state["model"]), dict(saved["model"]))
    assert same(state["task_state"], saved["task_state"])
    task, model = load_run(out, name)
    assert same(dict(model.state_dict()), {k: v for k, v in saved["model"].items()})


@pytest.mark.parametrize("name,text", [("translation", "abcde\nqrs\n"), ("classification", "the film was dull\nsuperb\n")])
def test_predict_from_export_equals_run(tiny_runs, tmp_path, name, text):
    run, _ = tiny_runs[name]
    out, _ = export(run, "safetensors", tmp_path / "out")
    (tmp_path / "in.txt").write_text(text)
    from attnapps.predict import main as predict

    answers = []
    for source in (run, out):
        target = tmp_path / f"answer_{len(answers)}.txt"
        extra = [f"output={target}"] if name == "translation" else []
        if name == "translation":
            assert predict([f"run={source}", f"input={tmp_path / 'in.txt'}", *extra]) == 0
            answers.append(target.read_text())
        else:
            import contextlib
            import io

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                assert predict([f"run={source}", f"input={tmp_path / 'in.txt'}"]) == 0
            answers.append(buf.getvalue())
    assert answers[0] == answers[1] and answers[0].strip()


def test_three_line_snippet_reads_the_weights(tiny_runs, tmp_path):
    """Outside attnapps: the weights and the config with the safetensors package and json alone."""
    run, _ = tiny_runs["classification"]
    out, _ = export(run, "safetensors", tmp_path / "out")
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    meta = json.loads((out / "attnapps.json").read_text())
    assert meta["task"] == "classification" and meta["config"]["model"]["arch"] == "bilstm_attention"
    saved = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    assert same(weights, dict(saved))


def test_bad_exports_are_one_line_errors(tiny_runs, tmp_path, capsys):
    run, _ = tiny_runs["generation"]
    out, _ = export(run, "safetensors", tmp_path / "out")
    (out / META).write_text("{not json")
    with pytest.raises(AttnappsError, match=r"attnapps.json: cannot read the export's description"):
        load_run(out)
    (out / META).write_text(json.dumps({"format": 99}))
    with pytest.raises(AttnappsError, match="not an attnapps export of format 1"):
        load_run(out)
    assert main([f"run={run}", "format=tflite"]) == 2
    assert "format='tflite': choose one of safetensors, onnx" in capsys.readouterr().err
    assert main([f"run={tmp_path / 'nowhere'}"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main([f"run={run}", "fmt=onnx"]) == 2
    assert "unknown key 'fmt'" in capsys.readouterr().err
