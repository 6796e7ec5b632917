"""Registry of attention variants, in the spirit of torchvision's ``register_model``/``get_model``."""

from __future__ import annotations

_ATTENTION: dict[str, type] = {}


def register_attention(name: str):
    """Class decorator: make a variant buildable as ``build_attention(name, ...)``."""

    def wrap(cls):
        if name in _ATTENTION and _ATTENTION[name] is not cls:
            raise ValueError(f"attention variant {name!r} is already registered")
        _ATTENTION[name] = cls
        cls.name = name
        return cls

    return wrap


def list_attention() -> list[str]:
    """Names of the registered variants, sorted."""
    return sorted(_ATTENTION)


def get_attention_class(name: str) -> type:
    from attnapps.errors import ConfigError

    try:
        return _ATTENTION[name]
    except KeyError:
        raise ConfigError(f"unknown attention {name!r}; choose one of {', '.join(list_attention())}") from None


OPTIONS = ("hidden_size", "heads", "dropout", "bias")  # what a model may pass whichever variant it builds


def build_attention(name: str, query_size: int, key_size: int | None = None, value_size: int | None = None,
                    **options):
    """Build a variant by name. ``options`` are among :data:`OPTIONS`: ``hidden_size`` (additive),
    ``heads`` (multihead), ``dropout`` (scaled_dot, multihead), ``bias`` (multihead). A model passes the
    ones its config has and each variant takes those its constructor names; any other name (a typo) is
    an error, as is an option that no variant could take."""
    import inspect

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"build_attention: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    key_size = query_size if key_size is None else key_size
    cls = get_attention_class(name)
    takes = inspect.signature(cls.__init__).parameters
    return cls(query_size, key_size, value_size, **{k: v for k, v in options.items() if k in takes})
