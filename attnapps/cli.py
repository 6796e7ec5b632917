"""The ``attnapps`` command: ``attnapps COMMAND [key=value ...]``, the same as ``python -m attnapps.COMMAND``.

    attnapps run task=translation [key=value ...]     train, evaluate, report (attnapps.run)
    attnapps prepare task=NAME [key=value ...]        read and encode a task's data once (attnapps.prepare)
    attnapps predict task=NAME run=DIR [key=value ...]  use a trained run (attnapps.predict)
    attnapps export run=DIR format=safetensors|onnx     a trained model for other programs (attnapps.export)
    attnapps average run=DIR last=N                     checkpoint averaging after the fact (attnapps.average)
    attnapps report DIR [DIR ...]                       compare runs (attnapps.report)
    attnapps study [tasks=...] [attention=...]          the cross-task attention study (attnapps.study)
    attnapps serve run=DIR [run=DIR ...]                the HTTP API and demo page (attnapps.serve)
    attnapps docs [--build-only] [--port N]             build and serve the documentation (attnapps.docs)
    attnapps --version

``attnapps COMMAND --help`` gives each command's keys.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {  # command -> (module with main(argv), what it does)
    "run": ("attnapps.run", "train, evaluate and report a task (task=NAME)"),
    "prepare": ("attnapps.prepare", "read, tokenize and encode a task's data once, for every later run"),
    "predict": ("attnapps.predict", "use a trained run on new inputs"),
    "export": ("attnapps.export.__main__", "a trained model as safetensors + JSON, or as ONNX graphs"),
    "average": ("attnapps.average", "average the weights of a run's last N kept checkpoints"),
    "report": ("attnapps.report", "compare runs side by side"),
    "study": ("attnapps.study", "every attention variant on every task, diagnostics side by side"),
    "serve": ("attnapps.serve.__main__", "serve trained runs: HTTP API and live attention page"),
    "docs": ("attnapps.docs", "build this documentation and serve it locally"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return ("usage: attnapps COMMAND [key=value ...]   (attnapps COMMAND --help for its keys)\n\ncommands:\n"
            + "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
            + "\n\noptions:\n  -h, --help     this message\n  -V, --version  the installed version")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        from attnapps import __version__

        print(f"attnapps {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'; choose one of {', '.join(COMMANDS)} (attnapps --help)",
              file=sys.stderr)
        return 2
    sys.argv = [f"attnapps {name}", *rest]
    try:
        code = importlib.import_module(COMMANDS[name][0]).main(rest)
    except BrokenPipeError:  # output piped into a reader that stopped early (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
