"""The generated reference pages of the attnapps documentation, written when a build starts.

* ``reference/_generated/config-<task>.md``: every key of every registered task -- type or allowed values,
  default, help -- from the task's config dataclass through :func:`attnapps.config.describe`, the source
  ``python -m attnapps.run task=NAME --help`` prints from;
* ``reference/_generated/commands.md``: the ``attnapps`` commands, from :data:`attnapps.cli.COMMANDS`;
* ``reference/_generated/outputs.md``: the run directory's files and the ``metrics.json`` keys, from
  :mod:`attnapps.outputs`, the diagnostics' keys and each task's ``outputs.py`` (a test fails on a file or
  key a tiny run of each task writes that these tables do not document);
* ``reference/_generated/errors.md``: every error a user can cause, from the catalog of
  ``tests/error_cases.py``: each case is caused when the site is built (in-process, about 15 s) and the page
  shows the line the code prints today, beside the catalog's advice;
* ``reference/_generated/serve-api.md``: the served API's endpoints, parameters and request bodies, from the
  OpenAPI schema FastAPI makes of :func:`attnapps.serve.create_app` (what ``/docs`` shows a running server).

Nothing here is typed by hand: a key added to a config appears in the next build.
"""

from __future__ import annotations

from pathlib import Path


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_page(task: str) -> str:
    from attnapps.config import describe
    from attnapps.task import get_task

    cls = get_task(task)
    lines = [f"# `task={task}`: every key", "",
             f"Generated from `{cls.config_class.__module__}.{cls.config_class.__name__}` (what "
             f"`python -m attnapps.run task={task} --help` prints). Give any key on the command line as "
             "`key=value`.", "",
             "| key | type or values | default | what it does |", "|---|---|---|---|"]
    for key, typ, default, help_text in describe(cls.config_class):
        if key != "task_name":
            lines.append(f"| `{cell(key)}` | {cell(typ)} | `{cell(default)}` | {cell(help_text)} |")
    return "\n".join(lines) + "\n"


def commands_page() -> str:
    from attnapps.cli import COMMANDS

    lines = ["# Commands", "", "Generated from `attnapps.cli.COMMANDS`. `attnapps COMMAND ...` is the same as "
             "`python -m MODULE ...`; `attnapps COMMAND --help` lists each command's keys.", "",
             "| command | module | what it does |", "|---|---|---|"]
    for name, (module, what) in COMMANDS.items():
        lines.append(f"| `attnapps {name}` | `python -m {module.removesuffix('.__main__')}` | {cell(what)} |")
    return "\n".join(lines) + "\n"


def outputs_table(patterns: dict[str, str], what: str) -> list[str]:
    lines = [f"| {what} | every run | what it is |", "|---|---|---|"]
    for pattern, meaning in patterns.items():
        always = meaning.startswith("*")
        lines.append(f"| `{cell(pattern)}` | {'yes' if always else ''} | {cell(meaning.lstrip('* '))} |")
    return lines + [""]


def outputs_page() -> str:
    from attnapps import outputs
    from attnapps.diagnostics import METRIC_KEYS as DIAG
    from attnapps.task import get_task, list_tasks

    tasks = [t for t in list_tasks() if get_task(t).metric_keys or get_task(t).run_files]
    lines = ["# The run directory and `metrics.json`", "",
             "Generated from `attnapps.outputs` (what every run writes), `attnapps.diagnostics.METRIC_KEYS` and "
             "each task's `outputs.py`. `<name>` stands for one part of a key or a path (no `.` or `/`), "
             "`<name...>` for any rest. \"every run\": every run at the defaults has it; the rest says when it "
             "appears. A test trains a tiny run of each task and fails on a file or key these tables do not "
             "name, or on one marked \"every run\" that is missing.", "",
             "A run directory is `hydra.run.dir=PATH` (default `runs/<task>/<date>_<time>`); "
             "`python -m attnapps.report RUN_DIR...` compares runs by their `metrics.json` and `config.yaml`.", "",
             "## Files every run writes", ""]
    lines += outputs_table(outputs.RUN_FILES, "file")
    for task in tasks:
        if get_task(task).run_files:
            lines += [f"### `task={task}` adds", ""] + outputs_table(get_task(task).run_files, "file")
    lines += ["## `metrics.json` keys", "", "One flat JSON object of numbers. `<split>` is `valid` or `test`.", "",
              "### Every task", ""]
    lines += outputs_table(outputs.METRIC_KEYS, "key")
    lines += ["### Attention diagnostics (`diag.examples=`, 0 = off; [Diagnostics](../../explanation/diagnostics.md))",
              ""] + outputs_table(DIAG, "key")
    for task in tasks:
        if get_task(task).metric_keys:
            lines += [f"### `task={task}`", ""] + outputs_table(get_task(task).metric_keys, "key")
    return "\n".join(lines)


NOISE = ("trainer.progress=", "trainer.max_steps=", "hydra.run.dir=", "data.cache_dir=")  # the cases' own settings


def errors_page() -> str:
    import functools
    import os
    import shlex
    import tempfile

    from tests import error_cases as ec

    lines = ["# Error messages and what to do", "",
             "Every error a user can cause stops the command with exit status 2 and one line, `error: ...`, that "
             "names the file and line, the key or the option at fault; a traceback means a bug (please report "
             "it). Bad data lines can be skipped and counted instead with `data.on_error=skip`.", "",
             "Generated: each case of `tests/error_cases.py` was caused when this page was built, and the line "
             "shown is what the code printed (`DIR` stands for the case's folder). `tests/test_bad_input.py` "
             "checks the same cases.", ""]
    kinds = {"CONFIG": ("config", ec.CONFIG_CASES), "RUN": ("run", ec.RUN_CASES)}
    saved = {k: os.environ.get(k) for k in ("ATTNAPPS_CACHE", "ATTNAPPS_EXTRA_KEYS")}
    with tempfile.TemporaryDirectory(prefix="attnapps-errors-") as tmp:
        os.environ["ATTNAPPS_CACHE"] = os.path.join(tmp, "cache")
        os.environ.pop("ATTNAPPS_EXTRA_KEYS", None)
        trained = functools.cache(lambda: ec.trained_run(Path(tmp) / "trained"))  # the first case needing it builds it
        try:
            for title, prefix in ec.SECTIONS:
                kind, cases = kinds.get(prefix, ("data", [c for c in ec.DATA_CASES if c[0].startswith(prefix)]))
                lines += [f"## {title}", ""]
                for case in cases:
                    folder = Path(tmp) / case[0]
                    folder.mkdir()
                    argv, entry, code, err = ec.run_case(kind, case, folder, trained)
                    said = [x for x in err.splitlines() if x.strip()]
                    if code != 2 or len(said) != 1:
                        raise RuntimeError(f"error case {case[0]}: exit {code}, stderr {err[-500:]!r}")
                    hide = lambda t: t.replace(str(folder), "DIR").replace(str(Path(tmp) / "trained"), "DIR")  # noqa: E731
                    shown = shlex.join(a for a in argv if not a.startswith(NOISE[:2] if kind == "run" else NOISE))
                    what, todo = ec.GUIDE[case[0]]
                    lines += [f"(error-{case[0]})=", f"### {what}", "", "```text", hide(f"$ {ec.COMMAND[entry]} {shown}"),
                              hide(said[0]), "```", "", f"**What to do:** {todo}", ""]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return "\n".join(lines)


def schema_type(schema: dict) -> str:
    """A JSON schema's type in words: ``string``, ``array of string``, ``string or null``, ``binary``..."""
    if "anyOf" in schema:
        return " or ".join(schema_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return "array of " + schema_type(schema.get("items", {}))
    if schema.get("format") == "binary":
        return "binary (a file)"
    return schema.get("type", "any")


def serve_page() -> str:
    import json

    from attnapps.serve.app import create_app

    spec = create_app({}).openapi()
    lines = ["# The served API", "", f"Generated from the OpenAPI schema ({spec['openapi']}) of `attnapps.serve` "
             f"(`{spec['info']['title']}`), the one a running server shows at `/docs`. Start a server with "
             "`python -m attnapps.serve run=RUN_DIR [run=RUN_DIR ...]`; every error is a JSON body "
             '`{"error": {"status": 422, "message": "..."}}` whose message is one line naming what to change.', ""]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", op.get("summary", ""), ""]
            if op.get("parameters"):
                lines += ["| parameter | in | required | type |", "|---|---|---|---|"]
                lines += [f"| `{q['name']}` | {q['in']} | {'yes' if q.get('required') else 'no'} | "
                          f"{cell(schema_type(q.get('schema', {})))} |" for q in op["parameters"]]
                lines.append("")
            for ctype, body in op.get("requestBody", {}).get("content", {}).items():
                schema = body.get("schema", {})
                lines += [f"Request body, `{ctype}`" + (f": {cell(schema['description'])}" if schema.get("description")
                                                         else ""), "",
                          "| field | type | what it is | example |", "|---|---|---|---|"]
                for name, prop in schema.get("properties", {}).items():
                    example = prop.get("examples", [""])[0] if prop.get("examples") else ""
                    lines.append(f"| `{name}` | {cell(schema_type(prop))} | {cell(prop.get('description', ''))} | "
                                 f"{'`' + cell(json.dumps(example)) + '`' if example != '' else ''} |")
                lines.append("")
    lines += ["## The whole schema", "", "```json", json.dumps(spec, indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def generate(srcdir: Path) -> list[Path]:
    """Write the generated pages under ``srcdir/reference/_generated`` (only files whose text changed, so
    an incremental build stays incremental); returns their paths."""
    from attnapps.task import list_tasks

    out = srcdir / "reference" / "_generated"
    out.mkdir(parents=True, exist_ok=True)
    pages = {f"config-{task}.md": config_page(task) for task in list_tasks()}
    pages["commands.md"] = commands_page()
    pages["serve-api.md"] = serve_page()
    pages["outputs.md"] = outputs_page()
    pages["errors.md"] = errors_page()
    pages["config.md"] = "# Config keys\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(
        f"config-{task}" for task in list_tasks()) + "\n```\n"
    written = []
    for name, text in pages.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def setup(app):
    app.connect("builder-inited", lambda app: generate(Path(app.srcdir)))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
