"""``attnapps.serve``'s ``key=value`` settings, with their help (``python -m attnapps.serve --help``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from attnapps.config import describe, opt
from attnapps.errors import ConfigError


@dataclass
class ServeConfig:
    run: list = field(default_factory=list, metadata={"help": "run directories to serve (repeat run=DIR)"})
    host: str = opt("127.0.0.1", "address to bind: loopback by default; 0.0.0.0 exposes the API to the network")
    port: int = opt(8000, "TCP port")
    device: str = opt("cpu", "cpu, cuda or cuda:N")
    batching: str = opt("auto", "batch: micro-batch concurrent requests per run; lock: one request at a time; "
                                "auto: batch where the task's infer batches its inputs (Task.infer_batches)")
    batch_window_ms: float = opt(5.0, "micro-batching: how long a batch waits for more requests")
    max_batch: int = opt(16, "micro-batching: most inputs per model call")
    max_body_mb: float = opt(8.0, "largest request body (413 above)")
    max_texts: int = opt(32, "most texts per request")
    max_tokens: int = opt(512, "most tokens per text (the run's tokenizer)")
    max_image_pixels: int = opt(20_000_000, "largest image, width x height (413 above)")
    # limits of the tasks' request options (each task names the option a key caps: Task.serve_limits)
    max_beam: int = opt(10, "largest beam a request may ask for (option 'beam')")
    max_new_tokens: int = opt(400, "most new tokens a request may ask for (option 'max_new_tokens')")
    timeout_s: float = opt(120.0, "a request waiting longer for its model gets 503")


def parse(argv: list[str]) -> ServeConfig:
    """``key=value`` arguments -> :class:`ServeConfig` (``run=`` repeats); an unknown key is named."""
    cfg, known = ServeConfig(), {f.name: f for f in fields(ServeConfig)}
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r} (usage: python -m attnapps.serve run=DIR ...)")
        key, value = arg.split("=", 1)
        key = key.strip()
        if key not in known:
            raise ConfigError(f"unknown key '{key}' for attnapps.serve; known: {', '.join(known)}")
        if key == "run":
            cfg.run.append(value)
            continue
        kind = type(getattr(cfg, key))
        try:
            setattr(cfg, key, kind(value))
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected {kind.__name__}") from None
    if not cfg.run:
        raise ConfigError("missing run=RUN_DIR (usage: python -m attnapps.serve run=DIR [run=DIR ...])")
    if cfg.batching not in ("auto", "batch", "lock"):
        raise ConfigError(f"batching={cfg.batching!r}: choose auto, batch or lock")
    for key in ("port", "max_batch", "max_texts", "max_tokens", "max_image_pixels", "max_beam", "max_new_tokens"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}={getattr(cfg, key)} must be at least 1")
    if cfg.max_body_mb <= 0 or cfg.batch_window_ms < 0 or cfg.timeout_s <= 0:
        raise ConfigError("max_body_mb and timeout_s must be positive, batch_window_ms at least 0")
    return cfg


def help_text() -> str:
    rows = [("run", "DIR", "", "run directories to serve (repeat run=DIR; at least one)")] + describe(ServeConfig)[1:]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {k:<{width}}  {h}" + (f" (default {d}, {t})" if d else f" ({t})") for k, t, d, h in rows)
