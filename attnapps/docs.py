"""``python -m attnapps docs [--build-only] [--port N]``: build the documentation site and serve it locally.

The sources are the repository's ``docs/`` folder (Sphinx + furo + MyST; the reference pages are
generated from the code at each build); the site goes to ``docs/_build/html``. Every warning is an error,
as in CI. Needs the ``docs`` extra (``pip install -e ".[docs]"``; ``dev`` includes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SOURCES = Path(__file__).resolve().parent.parent / "docs"


def build(sources: Path = SOURCES, out: Path | None = None) -> Path:
    """Build the HTML site (warnings are errors); returns its folder."""
    from attnapps.errors import AttnappsError

    if not (sources / "conf.py").is_file():
        raise AttnappsError(f"{sources}: no documentation sources here (they are in the repository's docs/ "
                            "folder: run this from a clone)")
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise AttnappsError('building the docs needs Sphinx: pip install -e ".[docs]"') from None
    out = out or sources / "_build" / "html"
    code = build_main(["-W", "--keep-going", "-q", "-b", "html", str(sources), str(out)])
    if code:
        raise AttnappsError(f"the documentation did not build (Sphinx exit status {code}; its messages are above)")
    return out


def serve(site: Path, port: int) -> None:
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving the documentation on http://127.0.0.1:{port}/ (Ctrl+C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    from attnapps.errors import AttnappsError

    p = argparse.ArgumentParser(prog="attnapps docs", description=__doc__.strip().splitlines()[0])
    p.add_argument("--build-only", action="store_true", help="build docs/_build/html and stop")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        site = build()
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"documentation built: {site / 'index.html'}")
    if not args.build_only:
        serve(site, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
