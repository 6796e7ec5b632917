"""``python -m attnapps.serve run=DIR [run=DIR ...] [host=127.0.0.1] [port=8000] [key=value ...]``:
trained runs behind an HTTP API with a live attention demo page.

``runner.py`` loads each run once and feeds its model (a lock, or micro-batches); ``app.py`` is the
FastAPI application (routes, limits, JSON errors); ``config.py`` the settings; ``__main__.py`` starts
uvicorn. Install with the ``serve`` extra: ``pip install "attnapps[serve]"`` (in a checkout: ``pip install -e ".[serve]"``).
"""

from attnapps.serve.config import ServeConfig, parse
from attnapps.serve.runner import LoadedRun, RequestError, load_runs


def create_app(runs, cfg=None):
    from attnapps.serve.app import create_app as make

    return make(runs, cfg)


__all__ = ["ServeConfig", "parse", "LoadedRun", "RequestError", "load_runs", "create_app"]
