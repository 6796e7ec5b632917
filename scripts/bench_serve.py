"""Benchmark ``attnapps.serve``: N concurrent clients against a real server on loopback, per task and per
batching mode, side by side in one run.

    python scripts/bench_serve.py run=DIR [run=DIR ...] [clients=8] [seconds=20] [modes=batch,lock,auto]
                                  [models=pytorch,onnx] [max_new_tokens=32] [out=FILE.json]

For each mode a fresh server (``python -m attnapps.serve``) loads the runs; for each run, ``clients``
threads send requests back to back for ``seconds`` (each thread its own keep-alive connection): texts for
text tasks, a PNG for captioning. Reports per task and mode: requests, failed requests (any status but
200), throughput (requests/s), latency p50/p95/p99, the inputs per model call (how much the micro-batcher
gathered), and the server's resident memory after a warm-up, at the end and at its peak (sampled every
0.5 s) -- flat memory over a long run means nothing accumulates per request. ``models``: each run served from
its checkpoint (``pytorch``) and from its ONNX export (``onnx``: ``RUN/export/onnx``, exported first when
missing; ONNX Runtime runs the graphs, and the answers carry no attention views).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["A man is riding a horse along the beach.", "The weather was lovely, so we walked to the old town.",
         "This film is a tedious, overlong mess with one good scene.", "It is a truth universally acknowledged",
         "Two children are playing football in the park.", "An unexpectedly moving and funny story."]


def png(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    im = Image.new("RGB", (128, 128), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x, y, r = rng.randint(10, 100), rng.randint(10, 100), rng.randint(8, 24)
        d.ellipse([x, y, x + r, y + r], fill=tuple(rng.randint(0, 255) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def request_for(run: dict, i: int, max_new_tokens: int) -> tuple[str, bytes, str]:
    path = f"/v1/{run['task']}/predict?run={run['id']}"
    if run["input"] == "image":
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + png(i % 8) + f"\r\n--{boundary}--\r\n".encode()
        return path, body, f"multipart/form-data; boundary={boundary}"
    options = {"max_new_tokens": max_new_tokens} if "max_new_tokens" in run["options"] else {}
    body = json.dumps({"text": TEXTS[i % len(TEXTS)], "options": options}).encode()
    return path, body, "application/json"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive(port: int, run: dict, clients: int, seconds: float, max_new_tokens: int) -> dict:
    latencies, failures, stop = [], [], time.monotonic() + seconds
    lock = threading.Lock()

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        i = k
        while time.monotonic() < stop:
            path, body, ctype = request_for(run, i, max_new_tokens)
            t = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and json.loads(data)["outputs"] is not None
            except Exception as e:  # a dropped connection counts as a failure
                ok, data = False, repr(e).encode()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            with lock:
                (latencies if ok else failures).append(time.perf_counter() - t if ok else data[:200])
            i += clients
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {"requests": len(latencies) + len(failures), "failed": len(failures), "first_failure": (
        failures[0].decode(errors="replace") if failures else ""), "throughput": len(latencies) / wall,
        "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000}


def bench_mode(mode: str, runs: list[str], clients: int, seconds: float, max_new_tokens: int) -> list[dict]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "attnapps.serve", *[f"run={r}" for r in runs], f"port={port}",
                             f"batching={mode}", f"max_batch={clients}"],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v1/runs")
                loaded = json.loads(conn.getresponse().read())["runs"]
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"server failed:\n{proc.stdout.read()}")
                time.sleep(0.2)
        rows = []
        for run in loaded:
            drive(port, run, clients, min(3.0, seconds), max_new_tokens)  # warm-up
            samples, done = [rss_mb(proc.pid)], threading.Event()

            def sample():
                while not done.wait(0.5):
                    samples.append(rss_mb(proc.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            before = json.loads(_get(port, "/v1/runs"))["runs"]
            result = drive(port, run, clients, seconds, max_new_tokens)
            after = json.loads(_get(port, "/v1/runs"))["runs"]
            done.set()
            sampler.join()
            b = next(r for r in before if r["id"] == run["id"])["stats"]
            a = next(r for r in after if r["id"] == run["id"])["stats"]
            calls = a["model_calls"] - b["model_calls"]
            rows.append({"task": run["task"], "mode": mode, "clients": clients, **result,
                         "inputs_per_call": (a["inputs"] - b["inputs"]) / calls if calls else 0.0,
                         "rss_start_mb": samples[0], "rss_end_mb": samples[-1], "rss_max_mb": max(samples)})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def onnx_export(run: str) -> str:
    """``RUN/export/onnx``, exported now when it is not there yet."""
    out = Path(run) / "export" / "onnx"
    if not (out / "onnx.json").is_file():
        subprocess.run([sys.executable, "-m", "attnapps.export", f"run={run}", "format=onnx"], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
    return str(out)


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return conn.getresponse().read()


def main(argv: list[str]) -> int:
    args = {"clients": "8", "seconds": "20", "modes": "batch,lock,auto", "models": "pytorch,onnx",
            "max_new_tokens": "32", "out": ""}
    runs = []
    for a in argv:
        k, _, v = a.partition("=")
        if k == "run":
            runs.append(v)
        elif k in args:
            args[k] = v
        else:
            raise SystemExit(f"unknown argument {a!r}; known: run=, " + ", ".join(f"{k}=" for k in args))
    if not runs:
        raise SystemExit(__doc__)
    rows = []
    for model in args["models"].split(","):
        if model not in ("pytorch", "onnx"):
            raise SystemExit(f"models={args['models']!r}: pytorch and/or onnx")
        served = runs if model == "pytorch" else [onnx_export(r) for r in runs]
        for mode in args["modes"].split(","):
            for row in bench_mode(mode, served, int(args["clients"]), float(args["seconds"]),
                                  int(args["max_new_tokens"])):
                rows.append({"model": model, **row})
    print(f"\n{args['clients']} concurrent clients, {args['seconds']} s per task and mode (loopback, this machine)\n")
    print("| task | model | batching | requests | failed | req/s | p50 ms | p95 ms | p99 ms | inputs per model call | "
          "server RSS start → end (max) MB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["task"], r["model"] != "pytorch", r["mode"])):
        print(f"| {r['task']} | {r['model']} | {r['mode']} | {r['requests']} | {r['failed']} | {r['throughput']:.1f} | "
              f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['inputs_per_call']:.1f} | "
              f"{r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} ({r['rss_max_mb']:.0f}) |")
    if args["out"]:
        Path(args["out"]).write_text(json.dumps(rows, indent=2))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
