"""``attnapps.serve``'s ``key=value`` settings, with their help (``python -m attnapps.serve --help``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from attnapps.config import at_least, describe, field_rules, matches, opt, positive
from attnapps.errors import ConfigError


@dataclass
class ServeConfig:
    run: list = field(default_factory=list, metadata={"help": "run directories to serve (repeat run=DIR)"})
    host: str = opt("127.0.0.1", "address to bind: loopback by default; 0.0.0.0 exposes the API to the network")
    port: int = opt(8000, "TCP port", check=at_least(1))
    device: str = opt("cpu", "cpu, cuda or cuda:N")
    batching: str = opt("auto", "batch: micro-batch concurrent requests per run; lock: one request at a time; "
                                "auto: batch where the task's infer batches its inputs (Task.infer_batches)",
                         check=matches("auto|batch|lock", "auto, batch or lock"))
    batch_window_ms: float = opt(5.0, "micro-batching: how long a batch waits for more requests", check=at_least(0))
    max_batch: int = opt(16, "micro-batching: most inputs per model call", check=at_least(1))
    max_body_mb: float = opt(8.0, "largest request body (413 above)", check=positive)
    max_texts: int = opt(32, "most texts per request", check=at_least(1))
    max_tokens: int = opt(512, "most tokens per text (the run's tokenizer)", check=at_least(1))
    max_image_pixels: int = opt(20_000_000, "largest image, width x height (413 above)", check=at_least(1))
    # limits of the tasks' request options (each task names the option a key caps: Task.serve_limits)
    max_beam: int = opt(16, "largest beam a request may ask for (option 'beam'; a run's own beam must fit)",
                        check=at_least(1))
    max_new_tokens: int = opt(400, "most new tokens a request may ask for (option 'max_new_tokens')",
                              check=at_least(1))
    timeout_s: float = opt(120.0, "a request waiting longer for its model gets 503", check=positive)


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
    for key, rule in field_rules(ServeConfig).items():  # each setting's rule, on its field
        why = rule(getattr(cfg, key))
        if why:
            raise ConfigError(f"{key}={getattr(cfg, key)!r} {why}")
    return cfg


def help_text() -> str:
    rows = [("run", "DIR", "", "run directories to serve (repeat run=DIR; at least one)")] + describe(ServeConfig)[1:]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {k:<{width}}  {h}" + (f" (default {d}, {t})" if d else f" ({t})") for k, t, d, h in rows)
