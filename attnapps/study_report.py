"""The study's report: per task, each variant's metrics as mean ± sd over seeds with 95% confidence
intervals, the paired difference to the task's default variant (seeds paired; "within noise" when its
interval holds 0), throughput, peak memory, parameters, the diagnostics side by side, the same test
examples' attention figures, and a summary written from the numbers. ``report.md`` + a self-contained
``index.html`` = ``report.html`` (figures inlined, linking each cell's own ``report.html`` explorer)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

def described(task: str) -> tuple[str, bool, list[str], str]:
    """What the study reads from the task itself: its primary metric, whether higher is better, the
    secondary metrics shown beside it and the attention figure (under ``plots/``) shown per variant."""
    from attnapps.study import split_entry
    from attnapps.task import get_task

    cls = get_task(split_entry(task)[0])  # translation+copy: translation's metrics
    return cls.primary_metric, cls.higher_is_better, list(cls.secondary_metrics), cls.study_figure


DIAG = ["entropy", "top1", "top3", "tau_grad", "tau_loo", "erase_max", "erase_random", "flip_max", "permute_tvd", "aer"]
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]  # t(0.975, df = 1..10)


def t95(n: int) -> float:
    return T95[n - 2] if 2 <= n <= 11 else 1.96


def stats(values: list[float]) -> dict:
    """mean, sample sd and the half-width of the 95% t interval (0 for one value)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": mean, "sd": sd, "ci": t95(n) * sd / math.sqrt(n) if n > 1 else 0.0}


def fmt(s: dict, digits: int = 3) -> str:
    if not s.get("n"):
        return "—"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}" + (f" [±{s['ci']:.{digits}f}]" if s["n"] > 1 else "")


def load(out: Path, plan: dict) -> dict:
    """task -> variant -> seed -> metrics (finished cells only)."""
    data: dict = {}
    for task in plan["tasks"]:
        for variant in dict.fromkeys([*plan["attention"], plan["default"][task]]):
            for seed in plan["seeds"]:
                path = out / "runs" / task / variant / f"seed_{seed}" / "metrics.json"
                if path.is_file():
                    data.setdefault(task, {}).setdefault(variant, {})[seed] = json.loads(path.read_text())
    return data


def learned(primary: dict, trivial: dict, higher: bool) -> bool:
    """Whether a cell's primary metric is beyond the task's trivial baseline (majority class, the source
    copied, a unigram model: ``trivial.test.<metric>`` in metrics.json) by more than rounding, in every seed's
    mean; True when the task reports no trivial baseline."""
    if not primary.get("n") or not trivial.get("n"):
        return True
    margin = 1e-3 * max(1.0, abs(trivial["mean"]))
    return primary["mean"] > trivial["mean"] + margin if higher else primary["mean"] < trivial["mean"] - margin


def paired(a: dict, b: dict, key: str) -> dict:
    """Per-seed differences a - b on ``key`` over the seeds both have."""
    return stats([a[s][key] - b[s][key] for s in a if s in b and key in a[s] and key in b[s]])


def task_section(task: str, runs: dict, plan: dict) -> tuple[list[str], list[str]]:
    """Markdown lines and the summary sentences of one task."""
    key, higher, secondary, _ = described(task)
    default = plan["default"][task]
    variants = [v for v in plan["attention"] if v in runs] + [v for v in runs if v not in plan["attention"]]
    unit = next((k for m in runs[variants[0]].values() for k in m if k.startswith("train.") and k.endswith("_per_sec")),
                "train.tokens_per_sec") if variants else ""
    lines = [f"## {task}", "", f"Primary metric: test {key} ({'higher' if higher else 'lower'} is better); mean ± sd "
             f"over seeds [95% CI half-width]; Δ: paired by seed against the default (`{default}`).", "",
             "| attention | test " + key + " | Δ vs default | " + " | ".join(f"test {m}" for m in secondary)
             + f" | {unit.split('.')[-1]} | peak MB | parameters |", "|---" * (6 + len(secondary)) + "|"]
    summary, means = [], {}
    for v in variants:
        col = lambda k: stats([m.get(k) for m in runs[v].values()])  # noqa: E731
        primary, trivial = col(f"test.{key}"), col(f"trivial.test.{key}")
        if not learned(primary, trivial, higher):
            lines.append(f"| {v} | {fmt(primary)} — **did not learn** (trivial baseline {trivial['mean']:.3f}) | — |"
                         + " |" * (3 + len(secondary)))
            summary.append(f"{v} did not learn on {task}: its test {key} ({primary['mean']:.3f}) is not beyond the "
                           f"trivial baseline's ({trivial['mean']:.3f}); train longer before comparing it")
            continue
        if v == default:
            delta = "(default)"
        elif default in runs:
            d = paired(runs[v], runs[default], f"test.{key}")
            noise = d.get("n", 0) > 1 and abs(d["mean"]) <= d["ci"]
            delta = fmt(d) + (" — within noise" if noise else "")
            if d.get("n", 0) > 1 and not noise:
                better = (d["mean"] > 0) == higher
                summary.append(f"{v} is {'better' if better else 'worse'} than {default} by {abs(d['mean']):.3f} {key}")
        else:
            delta = "—"
        if primary.get("n"):
            means[v] = primary["mean"]
        lines.append(f"| {v} | {fmt(primary)} | {delta} | " + " | ".join(fmt(col(f"test.{m}")) for m in secondary)
                     + f" | {fmt(col(unit), 0)} | {fmt(col('train.peak_memory_mb'), 0)} | "
                     f"{int(col('train.parameters').get('mean', 0)):,} |")
    for v, why in plan["not_applicable"].get(task, {}).items():
        lines.append(f"| {v} | not applicable: {why} |" + " |" * (5 + len(secondary)))
    shown = [d for d in DIAG if any(f"diag.{d}" in m for v in variants for m in runs[v].values())]  # the task's own
    lines += ["", "Diagnostics (mean over seeds; see the run reports for their meaning):", "",
              "| attention | " + " | ".join(shown) + " |", "|---" * (1 + len(shown)) + "|"]
    for v in variants:
        cells = [stats([m.get(f"diag.{d}") for m in runs[v].values()]) for d in shown]
        lines.append(f"| {v} | " + " | ".join(f"{c['mean']:.3f}" if c.get("n") else "—" for c in cells) + " |")
    if means:
        top = max(means.values()) if higher else min(means.values())
        best = [v for v, m in means.items() if abs(m - top) <= 1e-9]
        summary.insert(0, f"on {task}, {' and '.join(best)} {'have' if len(best) > 1 else 'has'} the best mean "
                          f"test {key} ({top:.3f}{', a tie' if len(best) > 1 else ''})")
    return lines, summary


def figures(out: Path, task: str, runs: dict, plan: dict) -> list[tuple[str, Path]]:
    """The first seed's attention figure of each variant (the same test examples in every run)."""
    seed = plan["seeds"][0]
    found = []
    for v in runs:
        path = out / "runs" / task / v / f"seed_{seed}" / "plots" / described(task)[3]
        if path.is_file():
            found.append((v, path))
    return found


def write(out: Path, plan: dict) -> dict:
    out = Path(out)
    data = load(out, plan)
    lines = ["# Attention study", "", f"Tasks: {', '.join(plan['tasks'])}; variants: {', '.join(plan['attention'])}; "
             f"seeds: {', '.join(map(str, plan['seeds']))}; preset `{plan['preset']}`"
             + (f"; overrides `{' '.join(plan['overrides'])}`" if plan["overrides"] else "")
             + (f"; wall time {plan['wall_seconds'] / 60:.1f} min" if "wall_seconds" in plan else "") + ".", ""]
    summary, body_html = [], []
    for task in plan["tasks"]:
        if task not in data:
            continue
        section, said = task_section(task, data[task], plan)
        summary += said
        lines += section + ["", "Attention on the same test example, by variant (first seed):", ""]
        figs = figures(out, task, data[task], plan)
        lines += [f"**{v}**: ![{task} {v}]({p.relative_to(out)})" for v, p in figs] + [""]
        explorers = sorted((out / "runs" / task).glob("*/seed_*/report.html"))
        if explorers:  # each cell's interactive explorer
            lines += ["Explore each run: " + ", ".join(f"[{p.parent.parent.name} {p.parent.name}]"
                                                         f"({p.relative_to(out)})" for p in explorers), ""]
        body_html.append(section_html(section, figs) + "<p>Explore each run: " + " · ".join(
            f"<a href='{html.escape(str(p.relative_to(out)))}'>{html.escape(p.parent.parent.name)} "
            f"{html.escape(p.parent.name)}</a>" for p in explorers) + "</p>")
    text = ("In this study " + "; ".join(summary) + ". Differences marked 'within noise' have a paired 95% interval "
            "that contains zero.") if summary else "No finished cells yet."
    lines[4:4] = ["## Summary", "", text, ""]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("index.html", "report.html"):  # report.html: the same name as in every run directory
        (out / name).write_text(page(lines[:4], text, body_html), encoding="utf-8")
    return {"summary": text, "cells": sum(len(s) for t in data.values() for s in t.values())}


def section_html(section: list[str], figs: list[tuple[str, Path]]) -> str:
    parts, table = [], []
    for line in section + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            rows = [r.strip("|").split(" | ") for r in table if not set(r) <= set("|-")]
            parts.append("<table>" + "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}"
                                                                f"</{'th' if i == 0 else 'td'}>" for c in r) + "</tr>"
                                             for i, r in enumerate(rows)) + "</table>")
            table = []
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line:
            parts.append(f"<p>{html.escape(line)}</p>")
    imgs = "".join(f"<figure><img src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
                   f"<figcaption>{html.escape(v)}</figcaption></figure>" for v, p in figs)
    return "".join(parts) + f"<div class='figs'>{imgs}</div>"


def page(head: list[str], summary: str, sections: list[str]) -> str:
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}.figs{display:flex;flex-wrap:wrap;gap:8px}"
             "figure{margin:0;width:380px}img{width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Attention study</title><style>{style}</style>"
            f"</head><body><h1>Attention study</h1><p>{html.escape(head[2])}</p><h2>Summary</h2>"
            f"<p>{html.escape(summary)}</p>{''.join(sections)}</body></html>")
