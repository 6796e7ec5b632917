"""The serving tests' helpers: ``served`` starts ``attnapps.serve`` as a user would. The tiny runs they
serve are ``tests/tiny_runs.py``'s session fixture."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request


@contextlib.contextmanager
def served(*args: str):
    """``python -m attnapps.serve *args`` on a free loopback port, as a user starts it; yields its base URL
    (``http://127.0.0.1:PORT/``) once ``/v1/runs`` answers, and stops it after."""
    from tests.conftest import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "attnapps.serve", *args, f"port={port}"],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "v1/runs", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
