"""``python -m attnapps.average run=DIR last=N [out=PATH] [evaluate=true]``: checkpoint averaging after the fact.

Averages the weights of the last N kept checkpoints of a run trained with ``trainer.keep_last`` (or
``trainer.average_last``), ``DIR/checkpoints/step_<update>.pt`` (:mod:`attnapps.training.average`), and writes
``DIR/checkpoints/average_last<N>.pt`` (or ``out``), which ``attnapps.predict run=...pt`` and
``attnapps.export run=...pt`` read as they read ``best.pt``. With ``evaluate=true`` it reads the run's valid
split and prints the valid metrics of the average beside those of ``best.pt``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from attnapps.errors import AttnappsError, ConfigError

USAGE = "usage: python -m attnapps.average run=DIR last=N [out=PATH] [evaluate=true|false]"


def valid_metrics(state: dict, where: Path) -> dict:
    """The valid metrics of a saved model (its task rebuilt with its own state; the valid split read)."""
    from attnapps import provenance
    from attnapps.predict import from_saved
    from attnapps.training.evaluation import evaluate_split

    task, model = from_saved(state, where)
    provenance.start_recording()
    task.load_data()
    metrics, _ = evaluate_split(task, model, "valid", final=False, autocast=contextlib.nullcontext)
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(__doc__.strip())
        return 0
    try:
        from attnapps.training.average import average_last
        from attnapps.training.checkpoint import atomic_save, load_checkpoint

        args = {}
        for a in argv:
            if "=" not in a:
                raise ConfigError(f"expected key=value, got {a!r} ({USAGE})")
            k, v = a.split("=", 1)
            if k not in ("run", "last", "out", "evaluate"):
                raise ConfigError(f"unknown key '{k}'; known: run, last, out, evaluate ({USAGE})")
            args[k] = v
        if "run" not in args or "last" not in args:
            raise ConfigError(f"missing {'run=DIR' if 'run' not in args else 'last=N'} ({USAGE})")
        if not args["last"].isdigit() or int(args["last"]) < 2:
            raise ConfigError(f"last={args['last']!r}: give a whole number of checkpoints, at least 2")
        evaluate = args.get("evaluate", "true").lower()
        if evaluate not in ("true", "false"):
            raise ConfigError(f"evaluate={evaluate!r}: true or false")
        run, n = Path(args["run"]), int(args["last"])
        if not (run / "checkpoints").is_dir():
            raise AttnappsError(f"run={run}: no checkpoints/ folder (is it an attnapps run directory?)")
        avg = average_last(run / "checkpoints", n)
        out = Path(args["out"]) if "out" in args else run / "checkpoints" / f"average_last{n}.pt"
        atomic_save(avg, out)
        print(f"averaged the weights of updates {', '.join(map(str, avg['averaged_steps']))} -> {out}")
        if evaluate == "true":
            best_path = run / "checkpoints" / "best.pt"
            rows = [(f"average of the last {n}", valid_metrics(avg, out))]
            if best_path.is_file():
                best = load_checkpoint(best_path)
                rows.insert(0, (f"best.pt (update {best.get('step')})", valid_metrics(best, best_path)))
            keys = sorted({k for _, m in rows for k in m})
            print("\n| valid | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
            for name, m in rows:
                print(f"| {name} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in keys) + " |")
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
