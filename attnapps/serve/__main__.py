"""``python -m attnapps.serve run=DIR [run=DIR ...] [key=value ...]`` (``--help`` lists the keys)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from attnapps.errors import AttnappsError
    from attnapps.serve.config import help_text, parse

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m attnapps.serve run=DIR [run=DIR ...] [key=value ...]\n\nkeys:\n" + help_text())
        return 0
    try:
        cfg = parse(argv)
        import importlib.util

        for name in ("fastapi", "fastapi_offline", "uvicorn", "multipart"):
            if importlib.util.find_spec(name) is None:
                raise AttnappsError(f"{name} is not installed: pip install \"attnapps[serve]\" (in a checkout: pip install -e \".[serve]\")")
        from attnapps.serve.app import create_app
        from attnapps.serve.runner import load_runs

        runs = load_runs(cfg.run, cfg.device, cfg.batching, cfg.batch_window_ms, cfg.max_batch)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: host={cfg.host} exposes the API (every loaded model, no authentication) to the network",
              file=sys.stderr)
    for r in runs.values():
        print(f"loaded {r.id}: task={r.task.name} from {r.dir}")
    print(f"serving on http://{cfg.host}:{cfg.port}/ (API docs: /docs)")
    app = create_app(runs, cfg)
    import uvicorn

    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    for r in runs.values():
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
