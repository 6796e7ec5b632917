"""The HTTP API and the demo page (FastAPI; Swagger UI served from the ``fastapi-offline`` package so
``/docs`` works without a network).

* ``GET /`` -- the demo page (:mod:`attnapps.explorer` in ``serve`` mode);
* ``GET /v1/runs`` -- the loaded runs, with their input kind, options and test metrics;
* ``POST /v1/{task}/predict[?run=ID]`` -- JSON ``{"text": ...}`` or ``{"texts": [...]}`` with
  ``"options": {...}`` for text tasks; ``multipart/form-data`` with an ``image`` file (options as
  form fields) for image tasks. Answers ``{"run", "task", "outputs", "examples", "seconds"}``.

Every error is JSON ``{"error": {"status", "message"}}`` with a 4xx status naming the problem
(a 500 says only "internal error"; its traceback goes to the server log). Nothing from a request
names a file: runs are looked up by id among those loaded at start.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from attnapps.serve.config import ServeConfig
from attnapps.serve.runner import LoadedRun, RequestError

log = logging.getLogger("attnapps.serve")


class TextRequest(BaseModel):
    """A text task's request: ``text`` or ``texts`` (not both), and the task's options."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="one input text", examples=["A man is riding a horse."])
    texts: list[str] | None = Field(None, description="several input texts (batch)")
    options: dict[str, Any] = Field(default_factory=dict, description="e.g. {\"beam\": 5} (see GET /v1/runs)")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read whole (declared
    ``Content-Length`` or counted while streaming)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = JSONResponse(error_body(413, f"request body over the limit of {self.max_bytes} bytes"), 413)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await too_big(scope, receive, send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooBig()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooBig:
            if not started:
                await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def error_body(status: int, message: str) -> dict:
    return {"error": {"status": status, "message": message}}


def create_app(runs: dict[str, LoadedRun], cfg: ServeConfig | None = None):
    from fastapi_offline import FastAPIOffline

    from attnapps.explorer import page

    cfg = cfg or ServeConfig()
    app = FastAPIOffline(title="attnapps", version=_version(), description=__doc__.split("\n\n")[0])
    app.state.runs = runs
    app.add_middleware(BodyLimit, max_bytes=int(cfg.max_body_mb * 1e6))

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError):
        return JSONResponse(error_body(e.status, e.message), e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
        msg = first.get("msg", "invalid")
        if first.get("type") == "json_invalid":
            msg, where = "body is not valid JSON", "body"
        return JSONResponse(error_body(422, f"{where}: {msg}"), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(error_body(e.status_code, str(e.detail)), e.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(error_body(500, "internal error (see the server log)"), 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page({"title": "attnapps: attention, live"}, mode="serve")

    @app.get("/v1/runs", summary="The loaded runs: task, input kind, options with defaults, metrics")
    def list_runs():
        return {"runs": [r.describe() for r in runs.values()]}

    @app.post("/v1/{task}/predict", summary="Outputs and their attention for new inputs",
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": TextRequest.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "image": {"type": "string", "format": "binary",
                                "description": "the image file (tasks that caption images)"},
                      "beam": {"type": "integer", "description": "beam size (optional; the run's by default)"}}}}}}})
    async def predict(task: str, request: Request, run: str | None = None):
        loaded = pick_run(runs, task, run)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if loaded.task.serve_input == "image":
            if ctype != "multipart/form-data":
                raise RequestError(415, f"task={task} takes an image: send multipart/form-data with a file field "
                                        f"'image' (got {ctype or 'no content type'})")
            form = await request.form(max_files=1, max_fields=20)
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise RequestError(422, "image: missing (a file field named 'image')")
            inputs = [read_image(await upload.read(), cfg.max_image_pixels)]
            given = {k: v for k, v in form.items() if k != "image"}
        else:
            if ctype != "application/json":
                raise RequestError(415, f"task={task} takes text: send application/json like {{\"text\": \"...\"}} "
                                        f"(got {ctype or 'no content type'})")
            try:
                body = TextRequest.model_validate(json.loads(await request.body()))
            except json.JSONDecodeError as e:
                raise RequestError(422, f"body is not valid JSON ({e.msg} at character {e.pos})") from None
            except UnicodeDecodeError as e:
                raise RequestError(422, f"body is not UTF-8 (byte {e.start}); JSON must be UTF-8") from None
            except Exception as e:
                err = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
                where = ".".join(str(x) for x in err.get("loc", ())) or "body"
                raise RequestError(422, f"{where}: {err.get('msg')}") from None
            inputs = check_texts(loaded, body, cfg)
            given = body.options
        options = loaded.options(given, cfg)
        start = time.perf_counter()
        import anyio

        examples = await anyio.to_thread.run_sync(loaded.infer, inputs, options, cfg.timeout_s)
        return {"run": loaded.id, "task": loaded.task.name, "outputs": [e.get("text", "") for e in examples],
                "examples": examples, "seconds": round(time.perf_counter() - start, 4)}

    return app


def pick_run(runs: dict[str, LoadedRun], task: str, run: str | None) -> LoadedRun:
    of_task = [r for r in runs.values() if r.task.name == task]
    if not of_task:
        tasks = sorted({r.task.name for r in runs.values()})
        raise RequestError(404, f"unknown task '{task[:40]}': this server has runs of {', '.join(tasks)}")
    if run is None:
        return of_task[0]
    for r in of_task:
        if r.id == run:
            return r
    raise RequestError(404, f"no run '{run[:60]}' of task={task}; loaded: {', '.join(r.id for r in of_task)}")


def check_texts(loaded: LoadedRun, body: TextRequest, cfg: ServeConfig) -> list[str]:
    if (body.text is None) == (body.texts is None):
        raise RequestError(422, "give exactly one of 'text' and 'texts'")
    texts = [body.text] if body.text is not None else body.texts
    if not texts:
        raise RequestError(422, "texts: empty list")
    if len(texts) > cfg.max_texts:
        raise RequestError(413, f"texts: {len(texts)} texts, over this server's limit of {cfg.max_texts}")
    for i, t in enumerate(texts):
        where = "text" if body.text is not None else f"texts[{i}]"
        if not t.strip():
            raise RequestError(422, f"{where}: empty text")
        n = loaded.task.count_tokens(t)
        if n > cfg.max_tokens:
            raise RequestError(413, f"{where}: {n} tokens, over this server's limit of {cfg.max_tokens}")
    return texts


def read_image(data: bytes, max_pixels: int):
    """Bytes -> an RGB PIL image; undecodable (422) or over ``max_pixels`` (413) -> RequestError."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(422, "image: empty file")
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size  # from the header, before any pixel is decoded
        if w * h > max_pixels:
            raise RequestError(413, f"image: {w}x{h} pixels, over this server's limit of {max_pixels}")
        im.load()
        return im.convert("RGB")
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise RequestError(422, f"image: cannot decode ({type(e).__name__})") from None


def _version() -> str:
    from attnapps import __version__

    return __version__
