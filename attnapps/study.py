"""``python -m attnapps.study``: every attention variant on every task at one budget, over seeds, with the
diagnostics side by side -- which attention works best here, and does it explain anything?

    python -m attnapps.study [tasks=translation,translation+copy,classification,captioning,generation]
        [attention=additive,dot,general,scaled_dot,multihead] [seeds=3] [study.preset=quick|full]
        [study.parallel=1] [out=DIR] [trainer.max_minutes=N | trainer.max_steps=N] [key=value ...]
        [TASK:key=value ...]

Each (task, variant, seed) cell is one ``python -m attnapps.run`` in ``DIR/runs/<task>/<variant>/seed_<n>``.
A task may name further uses of attention (``Task.study_uses``, e.g. translation's copy attention): each is
an entry ``task+use`` of its own, the task run with the use's keys, in the study by default.
A rerun skips finished cells and resumes interrupted ones (``trainer.resume=true``), so a killed study
finishes where it stopped. Each task's default variant is always run (the paired comparisons are against
it). A variant the task's architecture has no ``model.attention`` for, or that its
config rejects (e.g. heads not dividing the width), is listed as not applicable, not run. Overrides apply
to every task; ``TASK:key=value`` to one task only. ``DIR/report.md`` and ``DIR/index.html``
(:mod:`attnapps.study_report`) hold the tables, figures, diagnostics and a summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from attnapps.errors import AttnappsError, ConfigError

PRESETS = {  # the budgets the presets name (per cell); the task's Task.study_presets and the command line win
    "quick": ["trainer.max_steps=30", "trainer.warmup_steps=3", "trainer.max_minutes=0", "trainer.max_epochs=0",
              "diag.examples=8"],
    "full": ["trainer.max_minutes=0.5", "trainer.max_steps=0", "diag.examples=32"],
}


def split_entry(entry: str) -> tuple[str, list[str]]:
    """A study entry -> (its task, the keys of its use): ``translation`` -> (translation, []),
    ``translation+copy`` -> (translation, ``Task.study_uses["copy"]``)."""
    from attnapps.task import get_task

    task, _, use = entry.partition("+")
    uses = get_task(task).study_uses
    if use and use not in uses:
        raise ConfigError(f"tasks={entry}: task {task} has no study use {use!r}; "
                          f"its uses: {', '.join(uses) or 'none'}")
    return task, list(uses[use]) if use else []


def entries(tasks: list[str]) -> list[str]:
    """Every task, each followed by its further uses of attention (``task+use``)."""
    from attnapps.task import get_task

    return [e for t in tasks for e in [t, *(f"{t}+{u}" for u in get_task(t).study_uses)]]


def layered(*groups: list[str]) -> list[str]:
    """``key=value`` overrides, a later group's key replacing an earlier group's."""
    out: list[str] = []
    for group in groups:
        keys = {o.split("=", 1)[0] for o in group}
        out = [o for o in out if o.split("=", 1)[0] not in keys] + list(group)
    return out


@dataclass
class Study:
    tasks: list[str]
    attention: list[str]
    seeds: list[int]
    out: Path
    preset: str = "full"
    parallel: int = 1
    overrides: list[str] = field(default_factory=list)  # for every task
    scoped: dict[str, list[str]] = field(default_factory=dict)  # task -> its own overrides

    def task_overrides(self, entry: str) -> list[str]:
        """The preset's keys, the task's own for that preset (``Task.study_presets``), the entry's use
        (:func:`split_entry`), then the command line's (``TASK:key=value`` for the task and its uses)."""
        from attnapps.task import get_task

        task, use = split_entry(entry)
        own = get_task(task).study_presets.get(self.preset, [])
        return layered(PRESETS[self.preset], own, use, self.overrides + self.scoped.get(task, []))

    def run_dir(self, task: str, variant: str, seed: int) -> Path:
        return self.out / "runs" / task / variant / f"seed_{seed}"


def parse(argv: list[str]) -> Study:
    from attnapps.attention import list_attention
    from attnapps.task import list_tasks

    values, overrides, scoped, known = {}, [], {}, list_tasks()  # every registered task: the four, any plugin's
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"{arg!r}: expected key=value (see python -m attnapps.study --help)")
        if key in ("tasks", "attention", "seeds", "out", "study.preset", "study.parallel"):
            values[key] = value
        elif ":" in key:
            task, _, sub = key.partition(":")
            if task not in known:
                raise ConfigError(f"{arg!r}: unknown task {task!r}; choose one of {', '.join(known)}")
            scoped.setdefault(task, []).append(f"{sub}={value}")
        else:
            overrides.append(arg)
    chosen = values.get("tasks", ",".join(entries(known))).split(",")
    variants = values.get("attention", ",".join(list_attention())).split(",")
    for t in chosen:
        if t.partition("+")[0] not in known:
            raise ConfigError(f"tasks={t}: unknown task; choose from {', '.join(entries(known))}")
        split_entry(t)
    for v in variants:
        if v not in list_attention():
            raise ConfigError(f"attention={v}: unknown variant; choose from {', '.join(list_attention())}")
    preset = values.get("study.preset", "full")
    if preset not in PRESETS:
        raise ConfigError(f"study.preset={preset}: choose quick or full")
    try:
        n_seeds, parallel = int(values.get("seeds", "3")), int(values.get("study.parallel", "1"))
    except ValueError:
        raise ConfigError("seeds= and study.parallel= take whole numbers") from None
    if n_seeds < 1 or parallel < 1:
        raise ConfigError("seeds= and study.parallel= must be at least 1")
    out = Path(values.get("out", f"studies/{time.strftime('%Y-%m-%d_%H-%M-%S')}"))
    return Study(chosen, variants, [1234 + k for k in range(n_seeds)], out, preset, parallel, overrides, scoped)


def default_attention(entry: str) -> str:
    from attnapps.task import get_task

    return str(get_task(split_entry(entry)[0]).config_class().model.attention)


def applicability(study: Study, entry: str, variant: str) -> str | None:
    """None when the cell can run, else why not (the config's own one-line error)."""
    from attnapps.run import validate

    try:
        validate([f"task={split_entry(entry)[0]}", f"model.attention={variant}", *study.task_overrides(entry)])
    except AttnappsError as e:
        return str(e)
    return None


def cell_state(run_dir: Path) -> str:
    if (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "interrupted"
    return "new"


def run_cell(study: Study, task: str, variant: str, seed: int, threads: int) -> tuple[str, float]:
    run_dir = study.run_dir(task, variant, seed)
    state = cell_state(run_dir)
    if state == "done":
        return "skipped (done)", 0.0
    cmd = [sys.executable, "-m", "attnapps.run", f"task={split_entry(task)[0]}", f"model.attention={variant}",
           f"seed={seed}",
           *study.task_overrides(task), f"hydra.run.dir={run_dir}", "trainer.progress=false"]
    if threads:
        cmd.append(f"trainer.threads={threads}")
    if state == "interrupted":
        cmd.append("trainer.resume=true")
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "study.log", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HYDRA_FULL_ERROR="0"))
    if proc.returncode != 0:
        raise AttnappsError(f"cell {task}/{variant}/seed_{seed} failed (exit {proc.returncode}); see {run_dir / 'study.log'}")
    return ("resumed" if state == "interrupted" else "ran"), time.perf_counter() - start


def run(study: Study, log=print) -> dict:
    """Run (or finish) every applicable cell; write ``study.json`` (the plan) and the reports."""
    study.out.mkdir(parents=True, exist_ok=True)
    plan = {"tasks": study.tasks, "attention": study.attention, "seeds": study.seeds, "preset": study.preset,
            "overrides": study.overrides, "scoped": study.scoped, "default": {}, "not_applicable": {}}
    cells = []
    for task in study.tasks:
        plan["default"][task] = default_attention(task)
        for variant in dict.fromkeys([*study.attention, plan["default"][task]]):  # the default is always run
            why = applicability(study, task, variant)
            if why is not None:
                plan["not_applicable"].setdefault(task, {})[variant] = why
                log(f"{task}/{variant}: not applicable ({why})")
                continue
            cells += [(task, variant, seed) for seed in study.seeds]
    record = study.out / "study.json"
    try:  # a rerun adds its time to the time earlier invocations spent on the same study
        before = float(json.loads(record.read_text()).get("wall_seconds", 0.0)) if record.is_file() else 0.0
    except (ValueError, AttributeError):
        before = 0.0
    record.write_text(json.dumps(dict(plan, wall_seconds=before), indent=2))
    threads = max(1, (os.cpu_count() or 1) // study.parallel) if study.parallel > 1 else 0
    start = time.perf_counter()

    def one(cell):
        what, seconds = run_cell(study, *cell, threads)
        log(f"{'/'.join(map(str, cell))}: {what}" + (f" in {seconds:.0f} s" if seconds else ""))

    with ThreadPoolExecutor(max_workers=study.parallel) as pool:
        list(pool.map(one, cells))
    plan["wall_seconds"] = before + time.perf_counter() - start  # every invocation's time on this study
    record.write_text(json.dumps(plan, indent=2))
    from attnapps.study_report import write

    return write(study.out, plan)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    try:
        from attnapps.run import _register_primary

        _register_primary()  # the tasks, and the config every cell is checked against
        study = parse(argv)
        run(study)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {study.out / 'report.md'}\nexplorer: {study.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
