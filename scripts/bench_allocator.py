"""``trainer.keep_freed_memory`` on and off, per task: seconds in training steps and page faults, side by side.

    python scripts/bench_allocator.py [--tasks translation,classification,captioning,generation] [--steps 150]
                                      [--repeats 3] [key=value ...]

Each task's default runs ``--steps`` updates as users run it (``python -m attnapps.run``, no evaluation while
training), once with glibc's allocator set by the trainer (kept) and once as glibc comes (``false``), the two
interleaved, ``--repeats`` times. Columns: ``time.train_steps_seconds`` of the runs (median), their ratio
(glibc / kept: above 1 = kept is faster; the median of each pair's ratio, which this machine's drift over
minutes disturbs least), each pair's ratio, and the minor page faults of the whole run (setup and final
evaluation included; median), read from the finished child's ``getrusage``. ``key=value`` settings go to
every run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(task: str, keep: bool, steps: int, keys: list[str], out: Path) -> tuple[float, int]:
    """(seconds in training steps, the child's minor page faults)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    cmd = [sys.executable, "-m", "attnapps.run", f"task={task}", f"trainer.max_steps={steps}", "trainer.max_epochs=0",
           "trainer.eval_every=0", f"trainer.keep_freed_memory={str(keep).lower()}", "trainer.progress=false",
           "diag.examples=0", "explorer.examples=0", *keys, f"hydra.run.dir={out}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(f"task={task} trainer.keep_freed_memory={keep} failed:\n{r.stderr[-2000:]}")
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    return json.loads((out / "metrics.json").read_text())["time.train_steps_seconds"], faults


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="translation,classification,captioning,generation")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("keys", nargs="*", help="key=value settings for every run")
    args = p.parse_args()
    print(f"{args.steps} updates a run, {args.repeats} pairs a task (kept, then glibc's), interleaved"
          + (f"; settings: {' '.join(args.keys)}" if args.keys else "") + "\n")
    print("| Task | Training steps, kept (s) | glibc's defaults (s) | glibc / kept | Each pair | "
          "Page faults a run, kept | glibc's defaults |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for task in (t.strip() for t in args.tasks.split(",") if t.strip()):
            runs = {True: [], False: []}
            for i in range(args.repeats):
                for keep in (True, False):
                    runs[keep].append(one_run(task, keep, args.steps, args.keys, Path(tmp) / f"{task}-{keep}-{i}"))
            kept, glibc = ([s for s, _ in runs[k]] for k in (True, False))
            ratios = [g / k for k, g in zip(kept, glibc)]
            fk, fg = (statistics.median(f for _, f in runs[k]) for k in (True, False))
            print(f"| {task} | {statistics.median(kept):.2f} | {statistics.median(glibc):.2f} | "
                  f"**{statistics.median(ratios):.2f}x** | {', '.join(f'{r:.2f}' for r in ratios)} | "
                  f"{fk:,.0f} | {fg:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
