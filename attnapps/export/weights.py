"""``format=safetensors``: a trained model as files any program reads without pickle.

::

    OUT/model.safetensors       the weights, keyed as the model's ``state_dict()`` (safetensors)
    OUT/task_state.safetensors  the tensors of the task state (tokenizer model, lexicons), when it has any
    OUT/attnapps.json           {"format", "task", "config", "task_state", "step", "metrics"}: the run's
                                config and its task state (tokenizer, label names, choices made on valid),
                                each tensor replaced by {"$tensor": KEY} into task_state.safetensors

``python -m attnapps.predict run=OUT`` and ``attnapps.serve run=OUT`` load the folder as they load a run
directory; so does :func:`read_export` (what they call). The JSON codec keeps what a checkpoint's task
state may hold and JSON cannot: tensors, tuples, bytes and dicts whose keys are not all strings.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import torch

from attnapps.errors import AttnappsError

FORMAT = 1
META = "attnapps.json"
WEIGHTS = "model.safetensors"
STATE_TENSORS = "task_state.safetensors"
_TAGS = ("$tensor", "$tuple", "$bytes", "$dict")


def to_json(obj, tensors: dict, path: str = "task_state"):
    """``obj`` as JSON values; each tensor is moved into ``tensors`` under its path (``a.b.0``) and
    replaced by ``{"$tensor": path}``."""
    if torch.is_tensor(obj):
        tensors[path] = obj.detach().cpu().contiguous().clone()  # clone: no storage shared between keys
        return {"$tensor": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not set(obj) & set(_TAGS):
            return {k: to_json(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"$dict": [[to_json(k, tensors, f"{path}.k{i}"), to_json(v, tensors, f"{path}.{i}")]
                          for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"$tuple": [to_json(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_json(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"{path}: cannot export a {type(obj).__name__}")


def from_json(obj, tensors: dict):
    """The inverse of :func:`to_json`."""
    if isinstance(obj, list):
        return [from_json(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and next(iter(obj)) in _TAGS:
            tag, value = next(iter(obj.items()))
            if tag == "$tensor":
                return tensors[value]
            if tag == "$tuple":
                return tuple(from_json(v, tensors) for v in value)
            if tag == "$bytes":
                return base64.b64decode(value)
            return {_hashable(from_json(k, tensors)): from_json(v, tensors) for k, v in value}
        return {k: from_json(v, tensors) for k, v in obj.items()}
    return obj


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def write_export(state: dict, out: Path, weights: bool = True) -> list[Path]:
    """Write a checkpoint's ``state`` (``task``, ``model``, ``config``, ``task_state``; ``step`` and
    ``metrics`` when present) to the folder ``out``; returns the files written. ``weights=False``: the
    description only (the ONNX export, whose graphs hold the weights)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    meta = {"format": FORMAT, "task": state["task"], "config": state["config"],
            "task_state": to_json(state["task_state"], tensors), "step": state.get("step"),
            "metrics": state.get("metrics")}
    files = [out / WEIGHTS, out / META] if weights else [out / META]
    if weights:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in state["model"].items()}, str(out / WEIGHTS),
                  metadata={"format": "pt", "attnapps.task": state["task"]})
    if tensors:
        save_file(tensors, str(out / STATE_TENSORS))
        files.insert(1, out / STATE_TENSORS)
    elif (out / STATE_TENSORS).exists():
        (out / STATE_TENSORS).unlink()
    umask = os.umask(0)
    os.umask(umask)
    for f in files:  # safetensors writes owner-only files: give them a new file's permissions
        if f.suffix == ".safetensors":
            f.chmod(0o666 & ~umask)
    tmp = out / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / META)
    return files


def is_export(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / META).is_file()


def read_export(folder: Path) -> dict:
    """A folder :func:`write_export` wrote -> the same ``state`` dict a checkpoint holds (no pickle: JSON
    and safetensors only); ``model`` is None for an ONNX export (its weights are in its graphs)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AttnappsError(f"{folder / META}: cannot read the export's description ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AttnappsError(f"{folder / META}: not an attnapps export of format {FORMAT} "
                            f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    missing = [k for k in ("task", "config", "task_state") if k not in meta]
    if missing:
        raise AttnappsError(f"{folder / META}: no {missing[0]!r} in the export's description")
    try:
        onnx_only = not (folder / WEIGHTS).exists() and (folder / "onnx.json").is_file()  # the graphs hold them
        weights = None if onnx_only else load_file(str(folder / WEIGHTS))
        tensors = load_file(str(folder / STATE_TENSORS)) if (folder / STATE_TENSORS).is_file() else {}
    except (OSError, SafetensorError) as e:
        raise AttnappsError(f"{folder}: cannot read the exported weights ({str(e).splitlines()[0]})") from None
    try:
        task_state = from_json(meta["task_state"], tensors)
    except KeyError as e:
        raise AttnappsError(f"{folder / STATE_TENSORS}: no tensor {e} that {META} names") from None
    return {"task": meta["task"], "model": weights, "config": meta["config"], "task_state": task_state,
            "step": meta.get("step"), "metrics": meta.get("metrics")}
