"""Where finished runs spent their time, from their ``metrics.json`` (``time.*``): one Markdown row a run.

    python scripts/time_split.py RUN_DIR [RUN_DIR ...]

Columns: the task and architecture, seconds before the first training step (data, model), in training steps
(their batches and logging included), evaluating and checkpointing while training, the share of the run up
to its last step that was not training steps (``time.outside_steps_share``), updates made, the training
throughput, and the final evaluation after the budget (valid and test in full, the report's measurements).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def row(run: Path) -> str:
    m = json.loads((run / "metrics.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    missing = [k for k in ("time.setup_seconds", "time.outside_steps_share") if k not in m]
    if missing:
        sys.exit(f"{run / 'metrics.json'}: no {missing[0]} (a run from before the time split was recorded)")
    rate = next((f"{v:,.0f} {k.split('.')[1].removesuffix('_per_sec')}/s" for k, v in m.items()
                 if k.startswith("train.") and k.endswith("_per_sec")), "")
    arch = (cfg.get("model") or {}).get("arch")
    return (f"| {cfg['task_name']}{f' ({arch})' if arch else ''} | {m['time.setup_seconds']:.1f} | "
            f"{m['time.train_steps_seconds']:.1f} | {m['time.eval_seconds']:.1f} | "
            f"**{100 * m['time.outside_steps_share']:.1f}%** | {m['train.steps']} | {rate} | "
            f"{m['time.final_eval_seconds']:.1f} |")


def main() -> None:
    runs = [Path(a) for a in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    for run in runs:
        if not (run / "metrics.json").is_file():
            sys.exit(f"{run}: no metrics.json (not a finished run)")
    print("| Run | Setup (s) | Training steps (s) | Evaluation while training (s) | Outside steps | Updates | "
          "Throughput | Final evaluation (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main()
