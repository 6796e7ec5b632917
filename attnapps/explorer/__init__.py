"""The interactive attention explorer: ``report.html`` of every run and the page of ``attnapps.serve``.

One page, one script (``explorer.js``), one data format, whatever the task. A task describes each
example it explains as a dict (made with :func:`example` and :func:`view`):

* ``seqs``: named token lists, e.g. ``{"source": [...], "output": [...]}``;
* ``image`` (optional): ``{"src": data URI, "grid": [rows, cols]}``, attended as the sequence ``"image"``;
* ``views``: ``[{"name", "q", "k", "heads"}]`` -- ``heads`` is ``(heads, len(seqs[q]), len(seqs[k]))``
  attention in per mille (integers 0..1000), rows = queries (what attends), columns = keys;
* optional ``title``, ``label`` (``{"gold", "pred", "probs": {label: p}}``), ``refs`` (reference
  texts), ``nbest`` (``[[text, score], ...]``), ``text`` (the output as text), ``copy`` (a copying
  decoder: ``{"q", "k", "p": P(copy) per token of q, "from": the k position each copies most from}``).

Hovering or clicking a query token shades the keys by its row (an image: its attention map upsampled
over the picture, and the grid of regions); a view and a head (or the head average) are chosen with
two selectors. The page is self-contained: the script, the style and the data are inline, nothing is
fetched, it opens from disk. Only the numbers are embedded, rounded to per mille, and examples are
dropped from the end to keep the page under a size budget.
"""

from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["example", "view", "image_uri", "learning_curves", "fit_budget", "page", "write_report_html"]


def permille(weights) -> list:
    """Attention ``(..., q, k)`` in [0, 1] -> nested lists of integers 0..1000."""
    t = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    return (t.clamp(0, 1) * 1000).round().to(torch.int32).tolist()


def view(name: str, q: str, k: str, weights) -> dict:
    """One attention view: ``weights`` ``(heads, q_len, k_len)`` or ``(q_len, k_len)`` (one head) of the
    sequence ``q`` attending over the sequence ``k`` (``"image"`` for the image's regions)."""
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.dim() == 2:
        w = w.unsqueeze(0)  # (1 head, q_len, k_len)
    return {"name": name, "q": q, "k": k, "heads": permille(w)}


def example(seqs: dict[str, Sequence[str]], views: list[dict], **info: Any) -> dict:
    """An explained example (see the module docstring for ``info``'s keys); checks the shapes."""
    out = {"seqs": {k: [str(t) for t in v] for k, v in seqs.items()}, "views": views}
    out.update({k: v for k, v in info.items() if v is not None})
    for v in views:
        rows = len(out["seqs"][v["q"]])
        cols = (out["image"]["grid"][0] * out["image"]["grid"][1]) if v["k"] == "image" else len(out["seqs"][v["k"]])
        for h in v["heads"]:
            if len(h) != rows or any(len(r) != cols for r in h):
                raise ValueError(f"view {v['name']!r}: weights are not ({rows}, {cols}) for {v['q']} x {v['k']}")
    return out


def image_uri(pixels, max_side: int = 224, quality: int = 80) -> str:
    """An RGB image (PIL image, or uint8 array ``(H, W, 3)``) as a JPEG data URI, at most ``max_side`` px."""
    from PIL import Image

    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def learning_curves(log_path: str | Path, primary: str | None = None, points: int = 300) -> dict:
    """``{series: [[update, value], ...]}`` of ``log.csv``: train/valid loss and the primary metric."""
    from attnapps.plots import read_log

    series = read_log(log_path) if Path(log_path).exists() else {}
    keys = [k for k in ("train.loss", "valid.loss", f"valid.{primary}") if k in series]
    out = {}
    for k in dict.fromkeys(keys):
        pts = series[k]
        stride = max(1, len(pts) // points)
        out[k] = [[int(s), round(float(v), 5)] for s, v in pts[::stride]]
    return out


def fit_budget(examples: list[dict], max_bytes: int) -> tuple[list[dict], int]:
    """The longest prefix of ``examples`` whose JSON fits ``max_bytes``; and how many were dropped."""
    kept, size = [], 0
    for ex in examples:
        n = len(json.dumps(ex, separators=(",", ":")))
        if kept and size + n > max_bytes:
            break
        kept.append(ex)
        size += n
    return kept, len(examples) - len(kept)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page(data: dict, mode: str = "report") -> str:
    """The self-contained HTML page: ``mode="report"`` renders ``data`` (title, metrics, curves,
    examples); ``mode="serve"`` is the served demo, which asks its server for runs and predictions."""
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")  # no tag can open or close
    title = data.get("title", "attnapps")
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{esc(title)}</title>"
            f"<style>{_asset('explorer.css')}</style></head>\n<body data-mode='{mode}'><div id='app'></div>\n"
            f"<script type='application/json' id='data'>{payload}</script>\n"
            f"<script>{_asset('explorer.js')}</script></body></html>\n")


def write_report_html(run_dir: Path, title: str, metrics: dict, curves: dict, examples: list[dict],
                      max_mb: float, notes: Sequence[str] = ()) -> tuple[Path, int]:
    """``run_dir/report.html``; returns its path and the number of examples dropped for the size budget."""
    kept, dropped = fit_budget(examples, int(max_mb * 1e6))
    notes = list(notes) + ([f"{dropped} more examples left out to keep this page under {max_mb:g} MB "
                            "(explorer.max_mb=)"] if dropped else [])
    data = {"title": title, "metrics": {k: v for k, v in sorted(metrics.items()) if isinstance(v, (int, float))},
            "curves": curves, "examples": kept, "notes": notes}
    path = Path(run_dir) / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page(data), encoding="utf-8")
    tmp.replace(path)
    return path, dropped


def module_label(name: str) -> str:
    """``decoder.layers.1.cross_attn`` -> ``decoder · layer 2 · cross_attn`` (counted from 1)."""
    import re

    name = re.sub(r"(layers|blocks|members)\.(\d+)",
                  lambda m: f"{'member' if m.group(1) == 'members' else 'layer'} {int(m.group(2)) + 1}", name)
    return name.replace(".", " · ")


def recorded_views(maps: dict, i: int, seqs: dict[str, Sequence], route) -> list[dict]:
    """Views of example ``i`` from :func:`attnapps.attention.record`'s maps: ``route(name, weights)``
    gives ``(q, k)`` sequence names for a module (or None to leave it out); the weights are cut to the
    sequences' lengths (the batch was padded)."""
    views = []
    for name, w in maps.items():
        qk = route(name, w)
        if qk is None:
            continue
        q, k = qk
        views.append(view(module_label(name), q, k, w[i, :, : len(seqs[q]), : len(seqs[k])]))
    return views


def forced_views(model, forward, outputs: list[list[int]], bos: int, seqs: list[dict[str, Sequence]],
                 route) -> list[list[dict]]:
    """Every attention module's views of a sequence-to-sequence ``model``, with each of ``outputs`` (the
    decoded token ids, one list per example) forced through its decoder after ``bos``: ``forward(inputs)``
    runs the model on ``inputs (batch, len + 1)`` while :func:`attnapps.attention.record` records it;
    ``seqs[i]`` names example ``i``'s sequences and ``route`` says which ones a module reads
    (:func:`encoder_decoder_route`). The one explaining path of translation and captioning."""
    from attnapps.attention import record
    from attnapps.data.batching import pad_batch

    from attnapps.attention import Attention

    if not any(isinstance(m, Attention) for _, m in model.named_modules()):  # nothing to record (an ONNX export)
        return [[] for _ in seqs]
    inputs, _ = pad_batch([[bos] + list(o) for o in outputs])  # (batch, len + 1)
    with record(model) as maps:
        forward(inputs)
    return [recorded_views(maps, i, s, route) for i, s in enumerate(seqs)]


def encoder_decoder_route(source: str, output: str, output_in: str):
    """A ``route`` for :func:`recorded_views` by the modules' names: an encoder's self-attention reads
    ``(source, source)``, a decoder's self-attention (``self_attn``) ``(output, output_in)``, every other
    attention -- cross-attention, an RNN decoder's attention -- ``(output, source)``."""
    def route(name: str, weights) -> tuple[str, str]:
        parts = name.split(".")
        if "encoder" in parts:
            return source, source
        return (output, output_in) if "self_attn" in parts else (output, source)

    return route
