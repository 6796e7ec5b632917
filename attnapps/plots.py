"""Figures shared by the tasks: learning curves, attention heatmaps, token shading, image overlays.

matplotlib runs on the non-interactive Agg backend; every function writes a PNG and returns its path.
"""

from __future__ import annotations

import csv
import html
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

# Matplotlib takes each glyph from the first family in the list that has it (font fallback): fonts for
# Chinese, Japanese, Korean, Arabic, Hebrew, Devanagari and Thai are used when installed (Debian:
# fonts-noto-cjk, fonts-noto-core); without them those characters are drawn as boxes, and Arabic is not
# joined or ordered right to left in any case -- report.html and the HTML pages show every script properly.
FALLBACK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Noto Sans Arabic",
                  "Noto Sans Hebrew", "Noto Sans Devanagari", "Noto Sans Thai"]
_installed = {f.name for f in font_manager.fontManager.ttflist}
for _family in ("font.sans-serif", "font.monospace"):
    plt.rcParams[_family] = list(plt.rcParams[_family]) + [f for f in FALLBACK_FONTS if f in _installed]
# a glyph that no installed font has is drawn as a box (said above), not warned about once per glyph
warnings.filterwarnings("ignore", message="Glyph .* missing from font")


def save(fig, out: str | Path) -> Path:
    """Lay out, write ``out`` (creating its folder) and close the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``log.csv`` -> ``{key: [(step, value), ...]}``."""
    series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series[row["key"]].append((int(row["step"]), float(row["value"])))
    return dict(series)


def learning_curves(log_path: str | Path, out: str | Path, primary: str | None = None) -> Path | None:
    """Train/valid loss against updates, and the primary validation metric if it is not the loss."""
    series = read_log(log_path)
    if not series:
        return None
    keys = [k for k in ("train.loss", "valid.loss") if k in series]
    extra = f"valid.{primary}" if primary and primary != "loss" and f"valid.{primary}" in series else None
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(10 if extra else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    for k in keys:
        steps, values = zip(*series[k])
        ax.plot(steps, values, marker="o" if k.startswith("valid") else None, ms=3, label=k)
    ax.set_xlabel("update")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if extra:
        steps, values = zip(*series[extra])
        axes[0, 1].plot(steps, values, marker="o", ms=3, color="tab:green")
        axes[0, 1].set_xlabel("update")
        axes[0, 1].set_ylabel(extra)
        axes[0, 1].grid(alpha=0.3)
    return save(fig, out)


def attention_heatmap(weights, x_labels: Sequence[str], y_labels: Sequence[str], out: str | Path,
                      title: str = "", x_name: str = "source", y_name: str = "target") -> Path:
    """``weights (len(y_labels), len(x_labels))``: one row per query (e.g. target token)."""
    w = np.asarray(weights, dtype=np.float32)[: len(y_labels), : len(x_labels)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.38 * max(len(x_labels), 4), 1.0 + 0.34 * max(len(y_labels), 4)))
    im = ax.imshow(w, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(w.max()), 1e-6))
    ax.set_xticks(range(len(x_labels)), labels=list(x_labels), rotation=90, fontsize=8)
    ax.set_yticks(range(len(y_labels)), labels=list(y_labels), fontsize=8)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save(fig, out)


def shade_tokens_html(tokens: Sequence[str], weights: Sequence[float], caption: str = "") -> str:
    """One HTML paragraph with each token's background shaded by its (max-normalised) weight."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.max() if w.size and w.max() > 0 else w
    # the paragraph's direction comes from its first strong character (right to left for Arabic or Hebrew);
    # each token is a bidi isolate, so its shading stays on it whatever the scripts around it
    spans = [f'<span style="background: rgba(255,80,0,{a:.3f}); unicode-bidi: plaintext" title="{a:.3f}">'
             f'{html.escape(t)}</span>' for t, a in zip(tokens, w)]
    head = f"<div><b>{html.escape(caption)}</b></div>" if caption else ""
    return f"{head}<p dir=\"auto\">{' '.join(spans)}</p>"


def shade_tokens_png(rows: Sequence[tuple[Sequence[str], Sequence[float], str]], out: str | Path,
                     width_chars: int = 90) -> Path:
    """Several texts, each token on a background shaded by its (max-normalised) attention weight.

    ``rows``: ``(tokens, weights, caption)`` per text; long texts wrap at ``width_chars``.
    """
    lines = []  # (caption or None, [(token, alpha)])
    for tokens, weights, caption in rows:
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.max() if w.size and w.max() > 0 else w
        lines.append((caption, []))
        current, used = [], 0
        for t, a in zip(tokens, w):
            if used + len(t) + 1 > width_chars and current:
                lines.append((None, current))
                current, used = [], 0
            current.append((t, float(a)))
            used += len(t) + 1
        lines.append((None, current))
    fig = plt.figure(figsize=(width_chars * 0.085, 0.32 * len(lines) + 0.3))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    renderer = fig.canvas.get_renderer()
    for row, (caption, tokens) in enumerate(lines):
        y = 1 - (row + 0.8) / (len(lines) + 0.3)
        if caption is not None:
            ax.text(0.005, y, caption, fontsize=8, fontweight="bold", transform=ax.transAxes, va="center")
            continue
        x = 0.005
        for t, a in tokens:
            txt = ax.text(x, y, t, fontsize=8, transform=ax.transAxes, va="center", family="monospace",
                          bbox=dict(boxstyle="square,pad=0.15", fc=(1.0, 0.31, 0.0, a), ec="none"))
            box = txt.get_window_extent(renderer=renderer).transformed(ax.transAxes.inverted())
            x = box.x1 + 0.006
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_matrix_plot(matrix, labels: Sequence[str], out: str | Path) -> Path:
    """``matrix[gold][predicted]`` counts as an annotated heatmap."""
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(labels), 1.2 + 0.6 * len(labels)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=9)
    return save(fig, out)


def attention_over_image(image, words: Sequence[str], maps, out: str | Path, title: str = "",
                         columns: int = 6) -> Path:
    """The paper's figure (Xu et al. 2015): the image, then one panel per generated word with that
    step's attention map upsampled (bilinear) to the image and blended over it.

    ``image``: ``(H, W, 3)`` uint8 array; ``maps``: ``(len(words), k, k)`` attention over a k x k grid.
    """
    import torch

    img = np.asarray(image)
    maps = torch.as_tensor(np.asarray(maps, dtype=np.float32))[: len(words)]  # (T, k, k)
    up = torch.nn.functional.interpolate(maps.unsqueeze(1), size=img.shape[:2], mode="bilinear",
                                         align_corners=False).squeeze(1).numpy()  # (T, H, W)
    panels = 1 + len(words)
    cols = min(columns, panels)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.15 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(img)
    axes[0, 0].set_title("image", fontsize=9)
    for t, word in enumerate(words):
        ax = axes.flat[t + 1]
        ax.imshow(img)
        a = up[t] / max(float(up[t].max()), 1e-9)
        ax.imshow(a, cmap="gray", alpha=0.65, vmin=0.0, vmax=1.0)
        ax.set_title(word, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, out)
