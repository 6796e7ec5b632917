"""Run reports, and ``python -m attnapps.report DIR [DIR ...]`` to compare runs side by side.

A run directory holds ``config.yaml``, ``metrics.json``, ``log.csv``, ``report.md``, ``plots/*.png`` and
``checkpoints/``. The comparison walks each DIR for run directories (so a multirun sweep folder works),
and writes one table of metrics and of the config keys that differ between the runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from attnapps.plots import learning_curves
from attnapps.task import Explainer, Reporter

SUMMARY_KEYS = ("task_name", "seed", "model", "data.path", "trainer.max_epochs", "trainer.max_steps",
                "trainer.max_minutes", "trainer.batch_size", "trainer.lr", "trainer.precision")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def section(title: str, facts: list[str]) -> list[str]:
    """The head of a task's report section: ``## title`` and one bullet per fact."""
    return [f"## {title}", "", *[f"- {fact}" for fact in facts]]


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table (cells escaped for ``|``)."""
    cell = lambda v: _fmt(v).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def write_report(run_dir: Path, cfg, metrics: dict, task=None, model=None, provenance: dict | None = None,
                 results: dict | None = None) -> Path:
    """Write ``report.md`` (+ ``plots/``) for a finished run; the task adds its own sections."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    flat_cfg = _flat(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    lines = [f"# {cfg.task_name} run report", "", f"Run directory: `{run_dir}`", "", "## Configuration", "",
             "| key | value |", "|---|---|"]
    for k, v in flat_cfg.items():
        if any(k == s or k.startswith(s + ".") for s in SUMMARY_KEYS):
            lines.append(f"| `{k}` | {_fmt(v)} |")
    lines += ["", "Full config: `config.yaml`."]
    if (results or {}).get("training"):
        lines += ["", "## Training", "", results["training"]["stop"]]
        if results["training"].get("data"):
            lines += ["", results["training"]["data"]]
    lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    curve = None
    if (run_dir / "log.csv").exists():
        curve = learning_curves(run_dir / "log.csv", plots / "learning_curves.png",
                                primary=getattr(task, "primary_metric", None))
    if curve:
        lines += ["", "## Learning curves", "", f"![learning curves](plots/{curve.name})"]
    lines += diagnostics_section(metrics)
    if task is not None and model is not None:
        model.eval()
        for section in task.report(model, run_dir, results or {}) if isinstance(task, Reporter) else []:
            lines += ["", section.rstrip()]
    html = write_explorer(run_dir, cfg, metrics, task, model, results or {})
    if html is not None:
        lines[4:4] = [f"Interactive attention explorer: [`report.html`]({html.name}) (opens from disk).", ""]
    if provenance is not None:
        from attnapps.provenance import markdown

        lines += [""] + markdown(provenance)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_explorer(run_dir: Path, cfg, metrics: dict, task=None, model=None, results: dict | None = None):
    """``report.html``: the task's explained test examples, the learning curves and the metrics;
    None with ``explorer.examples=0``."""
    from attnapps.explorer import learning_curves as curves, write_report_html

    n = OmegaConf.select(cfg, "explorer.examples", default=16)
    if not n:
        return None
    examples = []
    if isinstance(task, Explainer) and model is not None:
        import torch

        with torch.no_grad():
            examples = task.explore(model.eval(), results or {}, int(n))
    primary = getattr(task, "primary_metric", None)
    path, _ = write_report_html(run_dir, f"{cfg.task_name} run: {Path(run_dir).name}", metrics,
                                curves(Path(run_dir) / "log.csv", primary), examples,
                                float(OmegaConf.select(cfg, "explorer.max_mb", default=4.0)))
    return path


DIAGNOSTICS = {  # diag.* key -> what it measures (attnapps/diagnostics.py)
    "entropy": "normalised entropy of the attention (0 = one input, 1 = uniform)",
    "top1": "weight of the top input", "top3": "summed weight of the top three inputs",
    "tau_grad": "Kendall tau: attention vs input x gradient importance",
    "tau_loo": "Kendall tau: attention vs leave-one-out erasure importance",
    "erase_max": "drop in log P(output) when the most attended input is removed",
    "erase_random": "... when a random input is removed",
    "flip_max": "decisions flipped by removing the most attended input",
    "flip_random": "... by removing a random input",
    "permute_tvd": "total variation of the output when the attention is permuted across inputs",
    "aer": "alignment error rate against the gold word alignments (data.alignments)",
}


def diagnostics_section(metrics: dict) -> list[str]:
    """The attention diagnostics of a run (``diag.*``) with what each means."""
    if not any(k.startswith("diag.") for k in metrics):
        return []
    lines = ["", "## Does the attention explain the output?", "",
             f"On {int(metrics.get('diag.examples', 0))} test examples ({int(metrics.get('diag.outputs', 0))} explained "
             f"outputs), {metrics.get('diag.seconds', 0):.1f} s ({metrics.get('diag.time_fraction', 0):.1%} of the "
             "training time); Jain & Wallace 2019, Wiegreffe & Pinter 2019.", "", "| diagnostic | value | meaning |",
             "|---|---|---|"]
    lines += [f"| `diag.{k}` | {metrics[f'diag.{k}']:.4f} | {text} |" for k, text in DIAGNOSTICS.items()
              if f"diag.{k}" in metrics]
    return lines


# ---------------------------------------------------------------------------------- comparison
def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            runs.append(p)
        else:
            runs += sorted(m.parent for m in p.rglob("metrics.json"))
    return runs


def compare(paths: list[str]) -> tuple[list[str], list[list[str]]]:
    """Rows of ``run | differing config keys | metrics`` for every run found under ``paths``."""
    runs = find_runs(paths)
    if not runs:
        from attnapps.errors import AttnappsError

        raise AttnappsError(f"no run directories (with metrics.json) under: {' '.join(paths)}")
    configs, metrics = [], []
    for r in runs:
        cfg_path = r / "config.yaml"
        configs.append(_flat(OmegaConf.to_container(OmegaConf.load(cfg_path))) if cfg_path.exists() else {})
        metrics.append(json.loads((r / "metrics.json").read_text()))
    all_keys = sorted({k for c in configs for k in c})
    differing = [k for k in all_keys if len({repr(c.get(k)) for c in configs}) > 1
                 and not k.startswith("trainer.resume")]
    metric_keys = sorted({k for m in metrics for k in m if k.startswith(("test.", "valid."))})
    metric_keys += [k for k in ("train.wall_seconds",) if any(k in m for m in metrics)]
    header = ["run"] + differing + metric_keys
    rows = [[str(r)] + [_fmt(c.get(k, "")) for k in differing] + [_fmt(m.get(k, "")) for k in metric_keys]
            for r, c, m in zip(runs, configs, metrics)]
    return header, rows


def to_markdown(header, rows) -> str:
    return "\n".join(table(header, rows)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnapps.report",
                                     description="Compare runs (e.g. a multirun sweep) in one table.")
    parser.add_argument("dirs", nargs="+", help="run directories or folders containing them")
    parser.add_argument("--out", help="write OUT.md and OUT.csv (default: print Markdown)")
    args = parser.parse_args(argv)
    from attnapps.errors import AttnappsError

    try:
        header, rows = compare(args.dirs)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md = to_markdown(header, rows)
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + rows)
    if args.out:
        Path(f"{args.out}.md").write_text(md)
        Path(f"{args.out}.csv").write_text(buf.getvalue())
        print(f"wrote {args.out}.md and {args.out}.csv ({len(rows)} runs)")
    else:
        print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
