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


def build_attention(name: str, query_size: int, key_size: int | None = None, value_size: int | None = None,
                    **kwargs):
    """Build a variant by name. Common keyword arguments: ``hidden_size`` (additive), ``heads``,
    ``dropout`` (scaled_dot, multihead); a variant ignores those it has no use for."""
    key_size = query_size if key_size is None else key_size
    return get_attention_class(name)(query_size, key_size, value_size, **kwargs)
