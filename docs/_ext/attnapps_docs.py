"""The generated reference pages of the attnapps documentation, written when a build starts.

* ``reference/_generated/config-<task>.md``: every key of every registered task -- type or allowed values,
  default, help -- from the task's config dataclass through :func:`attnapps.config.describe`, the source
  ``python -m attnapps.run task=NAME --help`` prints from;
* ``reference/_generated/commands.md``: the ``attnapps`` commands, from :data:`attnapps.cli.COMMANDS`;
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
