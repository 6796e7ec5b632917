"""``format=onnx``: a task's inference graphs, with the decoder's state as explicit inputs and outputs.

What is exported depends on the model's contract (:mod:`attnapps.decoding`), never on the task's name:

* a :class:`~attnapps.decoding.Seq2SeqDecoder` (``encode`` + ``step``): ``encoder.onnx`` = ``encode(inputs)``
  then the first step from BOS -> ``(log_probs (batch, vocab), state...)``; ``decoder.onnx`` = one
  ``step(tokens (batch,), state...) -> (log_probs, new state...)``. The state is the decoder's whole state
  flattened to tensors (encoder states, masks, RNN states, key/value caches: ``state.<i>``); the tensors a
  step never changes (the encoder's states, the mask) are inputs of the step only;
* a :class:`~attnapps.decoding.LanguageModel` (``new_state`` + ``step``): ``prefill.onnx`` = ``step(ids
  (batch, 1), new_state) -> (logits (batch, 1, vocab), cache...)`` and ``step.onnx`` = ``step(ids (batch, 1),
  cache...) -> (logits, cache...)`` with the key/value cache (or the LSTM's state and the states it attends
  over) as tensors. One token per call (an LSTM's sequence length would be fixed by tracing): a prompt
  goes in token by token;
* any other model: ``model.onnx``, its whole ``forward`` (a classifier: ``(ids, lengths) -> (logits,
  token weights)``).

The task supplies a batch to trace with (:meth:`attnapps.task.Task.export_inputs`: random ids or images of
the right shapes, no data needed) and, optionally, the settings its decoding applies to the model
(``Task.inference_context``). Every graph is checked in ONNX Runtime against PyTorch on another batch of
other sizes before the export counts as written; the largest difference is kept in ``onnx.json``.
Numbers kept in a state (a length counter) are bookkeeping: graphs carry its tensors only.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from attnapps.errors import AttnappsError

MANIFEST = "onnx.json"
TOLERANCE = 1e-4  # |ONNX Runtime - PyTorch| <= TOLERANCE * (1 + |PyTorch|) on every output (fp32)


@dataclass
class ExampleInputs:
    """A batch to trace and check the graphs with: ``inputs``, the keyword inputs of the model's entry
    point (``encode`` of a sequence-to-sequence model, ``step``'s ``ids`` of a language model, else
    ``forward``); ``bos``/``eos``: the decoder's first and last tokens (sequence-to-sequence)."""

    inputs: dict[str, Tensor]
    bos: int | None = None
    eos: int | None = None
    extra: dict = field(default_factory=dict)


def random_ids(batch: int, length: int, vocab: int, generator: torch.Generator, pad: int = 0,
               low: int = 4) -> tuple[Tensor, Tensor]:
    """``(ids (batch, length), lengths (batch,))``: random ids in ``[low, vocab)`` (past the special ones),
    rows of lengths ``length, length - 1, ...`` padded with ``pad``, for tracing and checking graphs.

    >>> ids, lengths = random_ids(2, 4, 10, torch.Generator().manual_seed(0), pad=0)
    >>> lengths.tolist(), bool((ids[1, 3:] == 0).all()), bool((ids[0] >= 4).all())
    ([4, 3], True, True)
    """
    low = min(low, vocab - 1)
    ids = torch.randint(low, vocab, (batch, length), generator=generator)
    lengths = torch.tensor([max(1, length - i) for i in range(batch)])
    ids = ids.masked_fill(torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1), pad)
    return ids, lengths


def model_kind(model) -> str:
    """``lm`` (``new_state`` + ``step``), ``seq2seq`` (``encode`` + ``step``) or ``module``."""
    if all(hasattr(model, a) for a in ("new_state", "step", "context")):
        return "lm"
    if hasattr(model, "encode") and hasattr(model, "step"):
        return "seq2seq"
    return "module"


def tensors_of(state) -> tuple[list[Tensor], object, list]:
    """``(tensors, spec, leaves)``: the tensor leaves of a state, and what rebuilds it (:func:`rebuild`)."""
    leaves, spec = tree_flatten(state)
    return [x for x in leaves if torch.is_tensor(x)], spec, leaves


def rebuild(tensors, spec, leaves):
    """The state of :func:`tensors_of` with ``tensors`` in place of its tensor leaves."""
    it = iter(tensors)
    return tree_unflatten([next(it) if torch.is_tensor(x) else x for x in leaves], spec)


class EncoderGraph(nn.Module):
    """``encode(**inputs)`` then the first decoder step from BOS: ``(log_probs, *state)``."""

    def __init__(self, model, names: list[str], bos: int):
        super().__init__()
        self.model, self.names, self.bos = model, names, bos

    def forward(self, *inputs):
        state = self.model.encode(**dict(zip(self.names, inputs)))
        batch = inputs[0].size(0)
        log_probs, state = self.model.step(torch.full((batch,), self.bos, dtype=torch.long, device=inputs[0].device),
                                           state)  # (batch, vocab)
        return (log_probs, *tensors_of(state)[0])


class StepGraph(nn.Module):
    """One decoder step over a flattened state: ``(tokens, *state) -> (log_probs, *changed state)``;
    ``changed``: the indices of the state tensors a step replaces (the others are inputs only)."""

    def __init__(self, model, spec, leaves, changed: list[int], lm: bool = False):
        super().__init__()
        self.model, self.spec, self.leaves, self.changed, self.lm = model, spec, leaves, changed, lm

    def forward(self, tokens, *tensors):
        out, state = self.model.step(tokens, rebuild(tensors, self.spec, self.leaves))
        new = tensors_of(state)[0]
        return (out, *[new[i] for i in self.changed])


class PrefillGraph(nn.Module):
    """A language model's first step from an empty state: ``ids -> (logits, *cache)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        logits, state = self.model.step(ids, self.model.new_state(ids.size(0)))
        return (logits, *tensors_of(state)[0])


class ModuleGraph(nn.Module):
    """``forward(**inputs)`` with its outputs flattened to a tuple of tensors."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return tuple(tensors_of(self.model(**dict(zip(self.names, inputs))))[0])


def dynamic_dims(a: Tensor, b: Tensor) -> dict:
    """The dimensions of a graph input that differ between two batches (``a`` traced, ``b`` of other
    sizes): those stay dynamic in the graph; the others (widths, layers) are fixed."""
    from torch.export import Dim

    return {d: Dim.AUTO for d in range(a.dim()) if a.shape[d] != b.shape[d]}


def _export(graph: nn.Module, args: tuple, others: tuple, names: list[str], outputs: list[str], path: Path) -> None:
    """Export ``graph`` traced on ``args``; a dimension that differs in ``others`` (the same inputs at other
    sizes) is dynamic."""
    specs = [dynamic_dims(a, b) for a, b in zip(args, others)]
    params = inspect.signature(graph.forward).parameters.values()
    n = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    shapes = tuple(specs[:n]) + ((tuple(specs[n:]),) if any(p.kind == p.VAR_POSITIONAL for p in params) else ())
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [q.level for q in quiet]
    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        for q in quiet:  # the exporter's progress and its optimiser's notes
            q.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(graph, args, dynamo=True, input_names=names, output_names=outputs,
                                        dynamic_shapes=shapes, external_data=False, verbose=False)
        except Exception as e:  # the exporter's own message is pages long: its summary line
            summary = next((ln for ln in str(e).splitlines() if ln.startswith("<class")), str(e).splitlines()[0])
            raise AttnappsError(f"{path.name}: this model does not export to ONNX ({summary.strip()})") from e
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    program.save(str(path))


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session, feeds: dict[str, Tensor]) -> list[Tensor]:
    """Run an ONNX Runtime session on torch tensors (only the inputs the graph kept); torch tensors out."""
    wanted = {i.name for i in session.get_inputs()}
    out = session.run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items() if k in wanted})
    return [torch.from_numpy(o) for o in out]


def _diff(a: list[Tensor], b: list[Tensor], what: str) -> float:
    if len(a) != len(b):
        raise AttnappsError(f"{what}: ONNX Runtime gave {len(a)} outputs, PyTorch {len(b)}")
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != tuple(y.shape):
            raise AttnappsError(f"{what}: ONNX Runtime output of shape {tuple(x.shape)}, PyTorch {tuple(y.shape)}")
        if y.is_floating_point() and y.numel():
            gap = (x.float() - y.float().cpu()).abs().nan_to_num(0.0)
            worst = max(worst, float(gap.max()))
            if bool((gap > TOLERANCE * (1 + y.float().cpu().abs())).any()):
                raise AttnappsError(f"{what}: ONNX Runtime differs from PyTorch by {float(gap.max()):.2e} "
                                    f"(more than {TOLERANCE:g} x (1 + |value|))")
        elif not torch.equal(x, y.cpu()):
            raise AttnappsError(f"{what}: ONNX Runtime and PyTorch differ on an integer output")
    return worst


def decoder_states(model, example: ExampleInputs, steps: int) -> list[tuple[Tensor, tuple]]:
    """``[(tokens, tensors_of(state))]`` after 1..``steps`` greedy steps of a sequence-to-sequence model from
    BOS, each taken when it was reached (a step may change a state in place)."""
    inputs = example.inputs
    state = model.encode(**inputs)
    tokens = torch.full((next(iter(inputs.values())).size(0),), example.bos, dtype=torch.long)
    out = []
    for _ in range(steps):
        log_probs, state = model.step(tokens, state)
        tokens = log_probs.argmax(-1)
        out.append((tokens, tensors_of(state)))
    return out


def export_graphs(model: nn.Module, trace: ExampleInputs, check: ExampleInputs, out: Path,
                  steps: int = 4) -> dict:
    """Export ``model``'s graphs to ``out`` (traced on ``trace``, checked on ``check``: a batch of other
    sizes, ``steps`` decoder steps) and return the manifest (also written to ``out/onnx.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    kind = model_kind(model)
    names = list(trace.inputs)
    args, others = tuple(trace.inputs[k] for k in names), tuple(check.inputs[k] for k in names)
    manifest: dict = {"format": 1, "kind": kind, "tolerance": TOLERANCE, "graphs": {}}
    with torch.no_grad():
        if kind == "module":
            outputs = [f"output.{i}" for i in range(len(ModuleGraph(model, names)(*args)))]
            _export(ModuleGraph(model, names), args, others, names, outputs, out / "model.onnx")
            manifest["graphs"]["model"] = {"file": "model.onnx", "inputs": names, "outputs": outputs}
            worst = _diff(run_session(_session(out / "model.onnx"), check.inputs),
                          list(ModuleGraph(model, names)(*others)), "model.onnx")
        elif kind == "seq2seq":
            manifest.update(bos=trace.bos, eos=trace.eos)
            (_, (tensors1, _, _)), (tokens, (tensors2, spec, leaves)) = decoder_states(model, trace, 2)  # 2+ cached
            changed = [i for i, (a, b) in enumerate(zip(tensors1, tensors2)) if a is not b]
            tokens_b, (tensors_b, _, _) = decoder_states(model, check, 3)[-1]
            state_names = [f"state.{i}" for i in range(len(tensors2))]
            new_names = ["log_probs", *[f"new.{i}" for i in changed]]
            _export(EncoderGraph(model, names, trace.bos), args, others, names, ["log_probs", *state_names],
                    out / "encoder.onnx")
            _export(StepGraph(model, spec, leaves, changed), (tokens, *tensors2), (tokens_b, *tensors_b),
                    ["tokens", *state_names], new_names, out / "decoder.onnx")
            manifest["graphs"] = {"encoder": {"file": "encoder.onnx", "inputs": names, "outputs": ["log_probs", *state_names]},
                                  "decoder": {"file": "decoder.onnx", "inputs": ["tokens", *state_names],
                                              "outputs": new_names}}
            manifest["state"], manifest["changed"] = state_names, changed
            worst = check_seq2seq(model, out, manifest, check, steps)
        else:
            manifest["context"] = int(model.context)

            # one token per call (an LSTM's sequence length does not stay dynamic when traced): a prompt
            # goes in token by token, the first from the empty state
            first_a, first_b = args[0][:, :1], others[0][:, :1]
            _, state_a = model.step(args[0], model.new_state(args[0].size(0)))  # a cache of 7 positions
            _, state_b = model.step(others[0], model.new_state(others[0].size(0)))
            ids_a, ids_b = first_a, first_b
            cache_a, spec, leaves = tensors_of(state_a)
            cache_names = [f"cache.{i}" for i in range(len(cache_a))]
            new_names = ["logits", *[f"new.{i}" for i in range(len(cache_a))]]
            _export(PrefillGraph(model), (first_a,), (first_b,), ["ids"], ["logits", *cache_names], out / "prefill.onnx")
            _export(StepGraph(model, spec, leaves, list(range(len(cache_a)))), (ids_a, *cache_a),
                    (ids_b, *tensors_of(state_b)[0]), ["ids", *cache_names], new_names, out / "step.onnx")
            manifest["graphs"] = {"prefill": {"file": "prefill.onnx", "inputs": ["ids"], "outputs": ["logits", *cache_names]},
                                  "step": {"file": "step.onnx", "inputs": ["ids", *cache_names], "outputs": new_names}}
            manifest["state"] = cache_names
            worst = check_lm(model, out, manifest, check, steps)
    manifest["max_abs_diff"] = worst
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_seq2seq(model, out: Path, manifest: dict, check: ExampleInputs, steps: int) -> float:
    """Greedy decoding of ``check`` for ``steps`` steps in PyTorch and in ONNX Runtime, side by side:
    the largest difference of their log-probabilities (and their tokens must agree)."""
    from attnapps.export.runtime import OnnxModel

    onnx_model = OnnxModel(out, manifest)
    worst = 0.0
    state_pt, state_rt = model.encode(**check.inputs), onnx_model.encode(**check.inputs)
    tokens = torch.full((next(iter(check.inputs.values())).size(0),), manifest["bos"], dtype=torch.long)
    for t in range(steps):
        lp_pt, state_pt = model.step(tokens, state_pt)
        lp_rt, state_rt = onnx_model.step(tokens, state_rt)
        worst = max(worst, _diff([lp_rt], [lp_pt], f"decoder step {t}"))
        tokens = lp_pt.argmax(-1)
    return worst


def check_lm(model, out: Path, manifest: dict, check: ExampleInputs, steps: int) -> float:
    """A prefill of ``check`` then ``steps`` one-token steps, in PyTorch and in ONNX Runtime."""
    from attnapps.export.runtime import OnnxModel

    onnx_model = OnnxModel(out, manifest)
    ids = check.inputs["ids"]
    state_pt, state_rt = model.new_state(ids.size(0)), onnx_model.new_state(ids.size(0))
    worst = 0.0
    for t in range(steps + 1):
        lg_pt, state_pt = model.step(ids, state_pt)
        lg_rt, state_rt = onnx_model.step(ids, state_rt)
        worst = max(worst, _diff([lg_rt], [lg_pt], "prefill" if t == 0 else f"step {t}"))
        ids = lg_pt[:, -1:].argmax(-1)  # (batch, 1)
    return worst


def export_onnx(state: dict, where: Path, out: Path) -> list[Path]:
    """``python -m attnapps.export format=onnx``: the run's task rebuilt, its graphs exported and checked,
    and the config and task state beside them (:func:`attnapps.export.weights.write_export`, no weights:
    they are inside the graphs)."""
    from attnapps.export.weights import write_export
    from attnapps.predict import from_saved

    try:
        import onnx  # noqa: F401  (the exporter writes through it)
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AttnappsError("format=onnx needs the onnx extra: pip install 'attnapps[onnx]'") from None
    task, model = from_saved(state, where)  # the checkpoint read once
    if not hasattr(task, "export_inputs"):
        raise AttnappsError(f"task {task.name} has no export_inputs: it does not say what its model reads")
    gen = torch.Generator().manual_seed(0)
    trace, check = task.export_inputs(model, 3, 9, gen), task.export_inputs(model, 2, 6, gen)
    ctx = task.inference_context(model) if hasattr(task, "inference_context") else contextlib.nullcontext()
    for old in out.glob("*.onnx") if out.is_dir() else ():
        old.unlink()
    with ctx:
        manifest = export_graphs(model, trace, check, out)
    files = write_export(state, out, weights=False)
    return [out / g["file"] for g in manifest["graphs"].values()] + [out / MANIFEST] + files
