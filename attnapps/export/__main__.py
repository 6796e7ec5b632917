"""``python -m attnapps.export run=DIR format=safetensors|onnx [out=PATH]`` (see :mod:`attnapps.export`)."""

from __future__ import annotations

import sys
from pathlib import Path

from attnapps.errors import AttnappsError, ConfigError
from attnapps.export import FORMATS

USAGE = "usage: python -m attnapps.export run=DIR format=safetensors|onnx [out=PATH]"


def export(run: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Export the model kept by ``run`` (a run directory or checkpoint file) as ``fmt``; ``(out, files)``."""
    from attnapps.predict import check_saved, read_saved

    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    state, where = read_saved(run)
    check_saved(state, where)
    run = Path(run)
    out = Path(out) if out else (run if run.is_dir() else run.parent.parent) / "export" / fmt
    if fmt == "safetensors":
        from attnapps.export.weights import write_export

        return out, write_export(state, out)
    from attnapps.export.graphs import export_onnx

    return out, export_onnx(state, where, out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(USAGE + "\n\n" + __import__("attnapps.export").export.__doc__.strip())
        return 0
    try:
        args = {}
        for a in argv:
            if "=" not in a:
                raise ConfigError(f"expected key=value, got {a!r} ({USAGE})")
            k, v = a.split("=", 1)
            if k not in ("run", "format", "out"):
                raise ConfigError(f"unknown key '{k}'; known: run, format, out ({USAGE})")
            args[k] = v
        if "run" not in args:
            raise ConfigError(f"missing run=DIR ({USAGE})")
        out, files = export(args["run"], args.get("format", "safetensors"), args.get("out"))
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in files)
    print(f"exported {len(files)} files ({size / 1e6:.1f} MB) to {out}:")
    for f in files:
        print(f"  {f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
