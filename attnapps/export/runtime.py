"""An exported ONNX folder as a model the decoders drive: ONNX Runtime sessions behind the same contracts.

:class:`OnnxModel` has the interface of the model it was exported from (:mod:`attnapps.decoding`), so
:func:`attnapps.decoding.search` / :func:`~attnapps.decoding.decode_batches` (greedy, batched beam search)
and :func:`~attnapps.decoding.sample_tokens` decode with it unchanged, and a task's ``predict`` runs on it:

* sequence-to-sequence: ``encode(**inputs)`` -> a state ``{"first": log_probs, "state.<i>": tensor}``
  (the encoder graph already took the first step from BOS); ``step(tokens, state)`` returns the stored
  first log-probabilities once, then runs the decoder graph. Beam search reorders the state's rows as it
  reorders any state's (:func:`attnapps.decoding.reorder_state`);
* language model: ``new_state(batch)``, ``step(ids (batch, new), state)`` (token by token), ``context``;
* any other model: ``model(**inputs)`` -> its outputs (a tuple when there are several).

No attention weights come out of the graphs: what needs them (the explorer's views, the report's
heatmaps, a task's re-ranking that forces hypotheses through the model) needs the PyTorch model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from attnapps.errors import AttnappsError


class OnnxModel:
    """The graphs of ``folder`` (``onnx.json`` names them) in ONNX Runtime sessions (CPU)."""

    training = False

    def __init__(self, folder: str | Path, manifest: dict | None = None, threads: int = 0):
        import onnxruntime as ort

        from attnapps.export.graphs import MANIFEST

        self.folder = Path(folder)
        if manifest is None:
            try:
                manifest = json.loads((self.folder / MANIFEST).read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise AttnappsError(f"{self.folder / MANIFEST}: cannot read the ONNX export's manifest ({e})") from None
        self.manifest, self.kind = manifest, manifest["kind"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        # no busy-waiting between calls: a decoder runs many short graphs with Python (the search) in between,
        # which spinning threads would take the cores from
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {}
        for name, graph in manifest["graphs"].items():
            path = self.folder / graph["file"]
            if not path.is_file():
                raise AttnappsError(f"{path}: missing (the manifest {MANIFEST} names it)")
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.context = manifest.get("context")

    # nn.Module's few calls that the decoders and predict make
    def eval(self):
        return self

    def to(self, device):
        if str(device) != "cpu":
            raise AttnappsError("an ONNX export runs on the CPU here (device=cpu)")
        return self

    def parameters(self):
        return iter(())

    def named_modules(self):  # no attention module to record: explaining views come out empty
        return iter(())

    def input_shape(self, name: str) -> list:
        """The shape of a graph input (a name for each dynamic dimension, an int for each fixed one)."""
        for session in self.sessions.values():
            for i in session.get_inputs():
                if i.name == name:
                    return list(i.shape)
        raise KeyError(name)

    def _run(self, name: str, feeds: dict[str, Tensor]) -> list[Tensor]:
        from attnapps.export.graphs import run_session

        return run_session(self.sessions[name], feeds)

    def __call__(self, *args, **inputs):
        if self.kind != "module":
            raise AttnappsError("this ONNX export has an encoder and a decoder step, not a whole forward pass "
                                "(the teacher-forced pass a task's re-ranking uses): decode with beam=1 or hybrid=false, or use the "
                                "run directory")
        names = self.manifest["graphs"]["model"]["inputs"]
        inputs.update(dict(zip(names, args)))
        out = self._run("model", inputs)
        return out[0] if len(out) == 1 else tuple(out)

    # sequence-to-sequence
    def encode(self, **inputs) -> dict:
        out = self._run("encoder", inputs)
        return {"first": out[0], **dict(zip(self.manifest["state"], out[1:]))}

    def step(self, tokens: Tensor, state: dict):
        if self.kind == "lm":
            return self._lm_step(tokens, state)
        if "first" in state:
            state = dict(state)
            return state.pop("first"), state
        out = self._run("decoder", {"tokens": tokens, **state})
        new = dict(state)
        for i, tensor in zip(self.manifest["changed"], out[1:]):
            new[f"state.{i}"] = tensor
        return out[0], new

    # language model
    def new_state(self, batch: int = 1) -> dict:
        return {}

    def _lm_step(self, ids: Tensor, state: dict):
        """``ids (batch, new)`` one token at a time (the graphs take one) -> ``(logits (batch, new, vocab), state)``."""
        logits = []
        for t in range(ids.size(1)):
            feeds = {"ids": ids[:, t:t + 1], **state}
            out = self._run("step" if state else "prefill", feeds)
            logits.append(out[0])
            state = dict(zip(self.manifest["state"], out[1:]))
        return torch.cat(logits, 1), state


def is_onnx_export(folder: Path) -> bool:
    from attnapps.export.graphs import MANIFEST

    return (Path(folder) / MANIFEST).is_file()
