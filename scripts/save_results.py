"""Run a measuring script and keep what it prints as a results fragment of the documentation.

    python scripts/save_results.py NAME -- python scripts/decision_tables.py --table generation
    python scripts/save_results.py NAME -- python -m attnapps.study ...

The command runs as typed (its printout still shows on the terminal); its standard output is written
to ``docs/results/saved/NAME.md`` below a line saying when, at which commit and on which machine it was
measured, and the command itself. The results pages include these fragments (MyST ``{include}``), so a
figure on them is what a script printed, never retyped: to update a page, rerun its command. The
command's exit status is this script's; on failure nothing is written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAVED = ROOT / "docs" / "results" / "saved"
sys.path.insert(0, str(ROOT))


def as_markdown(text: str) -> str:
    """The printout as page text: a printout with Markdown tables gets a blank line before and after each
    (a table printed right under a line of text is still a table once included in a page); one without
    (a fixed-width table) is kept as it was printed, in a ``text`` block."""
    lines, out = text.splitlines(), []
    if not any(line.startswith("|") for line in lines):
        return "```text\n" + text.rstrip() + "\n```\n"
    for i, line in enumerate(lines):
        table, before = line.startswith("|"), lines[i - 1] if i else ""
        if table and before.strip() and not before.startswith("|"):
            out.append("")
        if not table and line.strip() and before.startswith("|"):
            out.append("")
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def header(command: list[str]) -> str:
    from attnapps.provenance import code_version, cpu_model

    code = code_version()
    commit = (code["git_commit"] or "?")[:10] + (" with uncommitted changes" if code["git_dirty"] else "")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    command = ["python" if i == 0 and Path(c).name.startswith("python") else c for i, c in enumerate(command)]
    shown = shlex.join(command).replace(str(ROOT) + "/", "").replace(str(Path.home()), "~")
    return (f"<!-- written by scripts/save_results.py; do not edit: rerun the command below to update -->\n"
            f"Measured {when} at commit `{commit}` on {cpu_model()} ({os.cpu_count()} CPUs):\n\n"
            f"```text\n{shown}\n```\n\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: python scripts/save_results.py NAME -- COMMAND ...")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="the fragment's name: docs/results/saved/NAME.md")
    ap.add_argument("--dir", default=str(SAVED), help="where fragments go (default docs/results/saved)")
    args, command = ap.parse_args(argv[:cut]), argv[cut + 1:]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name) or not command:
        sys.exit("error: NAME is letters, digits, '_', '-', '.'; and a command follows --")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    printed = []
    for line in proc.stdout:  # shown as it comes, kept for the fragment
        sys.stdout.write(line)
        sys.stdout.flush()
        printed.append(line)
    if proc.wait() != 0:
        print(f"error: the command exited with status {proc.returncode}; nothing saved", file=sys.stderr)
        return proc.returncode
    out = Path(args.dir) / f"{args.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(header(command) + as_markdown("".join(printed)), encoding="utf-8")
    os.replace(tmp, out)
    print(f"saved: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
